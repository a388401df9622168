"""Narrowing for tests and benchmarks: SQLModel types every primary key `int | None` (unset until the
row is stored) and `session.get` may find nothing. Where a test knows the row is there, it says so
here, and a wrong belief fails as an assertion instead of an AttributeError later."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Stored(Protocol):
    @property
    def id(self) -> int | None: ...


def present(value: T | None, what: str = "value") -> T:
    """`value`, asserted not to be None (a row just stored or looked up, a field just set)."""
    assert value is not None, f"expected a {what}, got None"
    return value


def id_of(row: Stored) -> int:
    """The primary key of a row read from (or flushed to) the database."""
    assert row.id is not None, f"{type(row).__name__} has no id: it was never stored"
    return row.id


def ids_of(rows: Iterable[Stored]) -> list[int]:
    """The primary keys of stored rows, in order."""
    return [id_of(row) for row in rows]
