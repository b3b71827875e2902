"""Run history that outlives Redis: the database (SQLite or PostgreSQL through SQLAlchemy Core, Alembic
migrations in migrations/) and lineage queries. Imports nothing of ifcflow but its errors."""
