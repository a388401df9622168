"""Row keys for pages: SQLModel types every primary key `int | None` (None only before the row is
stored). Pages show rows read from the database, so their keys are there; this says so once."""

from __future__ import annotations

from typing import Protocol


class Stored(Protocol):
    @property
    def id(self) -> int | None: ...


def id_of(row: Stored) -> int:
    """The primary key of a row read from the database."""
    assert row.id is not None, f"{type(row).__name__} has no id: it was never stored"
    return row.id
