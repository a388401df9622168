"""Alembic environment: models from core.platform.models, URL from core.platform.config (or the caller's connection)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy import pool
from sqlmodel import SQLModel

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from sqlalchemy.engine import Connection

import core.platform.models  # noqa: F401  (registers every table on SQLModel.metadata)
from core.platform.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render SQLModel's column types as plain SQLAlchemy ones (docs/style.md §3.2 rule 6)."""
    if type_ == "type":
        name = type(obj).__name__
        if name == "AutoString":
            length = getattr(obj, "length", None)
            return f"sa.String(length={length})" if length else "sa.String()"
        if name == "UTCDateTime":
            return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,
        render_item=render_item,
    )


def run_migrations_offline() -> None:
    from core.platform.config import get_settings

    context.configure(
        url=config.get_main_option("sqlalchemy.url") or get_settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # core.platform.migrate passes an open connection
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from core.platform.config import get_settings

    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
