"""Run history that outlives Redis: the database (SQLite or PostgreSQL through SQLAlchemy Core, Alembic
migrations in migrations/) and lineage queries. Imports nothing of ifcflow but its errors."""

ENV = "IFCFLOW_DATABASE_URL"
"""The history database's URL (:mod:`ifcflow.history.database`); here so the CLI names it without importing
SQLAlchemy."""
MAX_DEPTH = 100
"""The deepest lineage walk (:mod:`ifcflow.history.lineage`)."""
