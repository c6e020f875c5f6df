"""Alembic environment. The Store hands over its own connection (no alembic.ini at runtime); run from the alembic
CLI instead (e.g. to autogenerate a revision) it connects to sqlalchemy.url or $DATABASE_URL."""

from alembic import context

from bot.store.models import Base


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from bot.store.db import Database

    db = Database(context.config.get_main_option("sqlalchemy.url"))
    try:
        with db.engine.connect() as conn:
            _run(conn)
    finally:
        db.close()
