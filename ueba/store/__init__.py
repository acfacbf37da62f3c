"""The shared Postgres store: table definitions, migrations, event partitions."""
