"""The database: engine, tables, queries, the claim and outbox writes, migrations, its thread."""
