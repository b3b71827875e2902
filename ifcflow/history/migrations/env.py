"""Alembic environment of the history database: run programmatically by :func:`ifcflow.history.database.migrate`, which
passes an open connection (``config.attributes["connection"]``)."""

from alembic import context
from sqlalchemy import text

from ifcflow.history.database import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
if connection.dialect.name == "postgresql":  # processes starting at once migrate one after the other
    connection.execute(text("SELECT pg_advisory_xact_lock(719190191)"))
with context.begin_transaction():
    context.run_migrations()
