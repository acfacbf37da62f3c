"""All SQL of the query service, by read model; services/query/README.md describes the statements."""
