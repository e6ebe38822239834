from __future__ import annotations

from alembic import context

from storage.models import Base, UTCDateTime

target_metadata = Base.metadata


def render_item(type_, obj, autogen_context):
    """Write our UTC wrapper as the plain column type it stores, so migrations need no app import."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through storage.migrate with an open connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
