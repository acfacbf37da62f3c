"""The shared Postgres store: table definitions, migrations, day partitions."""
