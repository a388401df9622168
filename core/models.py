"""All table models. Alembic (migrations/) owns the schema; every change here needs a migration.

Datetimes are timezone-aware UTC (SQLModel maps plain `datetime` to a UTC type; never add
`sa_type=DateTime(...)`). Secrets never live in these tables in clear: they are rows of
`StoredSecret`, sealed by `core.crypto` and bound to their owner and purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    viewer = "viewer"  # finance team: sees token health and history
    operator = "operator"  # power users: approve documents, manual transfers, retries
    admin = "admin"  # companies, tokens, users, keys, settings


class Interface(StrEnum):
    datev = "datev"
    lexware = "lexware"
    none = "none"


class AppUser(SQLModel, table=True):
    """A person who may use the dashboard. The role is looked up on every Streamlit run."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    # The identity provider's subject, bound at the first sign-in with this e-mail address.
    sub: str | None = Field(default=None, max_length=255, unique=True)
    display_name: str = Field(default="", max_length=200)
    role: str | None = Field(default=None, max_length=20)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Company(SQLModel, table=True):
    """A company whose documents go to one bookkeeping interface."""

    __table_args__ = (
        UniqueConstraint("consultant_number", "client_number", name="uq_company_datev_pair"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    consultant_number: int | None = Field(default=None)  # DATEV Berater-Nr.
    client_number: int | None = Field(default=None)  # DATEV Mandanten-Nr.
    interface: str = Field(default=Interface.datev.value, max_length=20)
    auto_transfer: bool = Field(default=False)
    default_document_type: str | None = Field(default=None, max_length=30)
    archived_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def datev_client_id(self) -> str | None:
        """DATEV's technical client id `<consultant>-<client>`, or None without both numbers."""
        if self.consultant_number is None or self.client_number is None:
            return None
        return f"{self.consultant_number}-{self.client_number}"


class AuditEvent(SQLModel, table=True):
    """Append-only (database triggers refuse UPDATE and DELETE). Never holds secret values."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=255)
    action: str = Field(max_length=60, index=True)
    entity_type: str = Field(max_length=40)
    entity_id: str | None = Field(default=None, max_length=60)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    detail: str | None = Field(default=None, max_length=500)


class StoredSecret(SQLModel, table=True):
    """One encrypted secret, bound to (owner_type, owner_id, purpose) through the AEAD context."""

    __tablename__ = "stored_secret"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id", "purpose", name="uq_secret_owner"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_type: str = Field(max_length=40)
    owner_id: int
    purpose: str = Field(max_length=40)
    ciphertext: str = Field(max_length=20_000)
    key_id: str = Field(max_length=80, index=True)
    fingerprint: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def context(self) -> str:
        return secret_context(self.owner_type, self.owner_id, self.purpose)


def secret_context(owner_type: str, owner_id: int, purpose: str) -> str:
    return f"{owner_type}:{owner_id}:{purpose}"


class KeyCheck(SQLModel, table=True):
    """A known value sealed with each key, so a wrong key is detected at start, not on first use."""

    __tablename__ = "key_check"

    key_id: str = Field(primary_key=True, max_length=80)
    ciphertext: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class Provider(StrEnum):
    datev = "datev"
    lexware = "lexware"


class ConnectionKind(StrEnum):
    long_term = "long_term"  # DATEV Langzeittoken (offline_access) or a Lexware API key: used unattended
    one_off = "one_off"  # a single DATEV login without offline_access, for one user's manual transfer


class Connection(SQLModel, table=True):
    """One company's access to one provider. Tokens themselves are `StoredSecret` rows
    (owner_type "connection"): `refresh_token`, `access_token` (DATEV) or `api_key` (Lexware).

    `slot` makes "one per company and provider" a database rule: "long_term" for the connection the
    scheduler uses, "one_off:<user id>" for a user's manual login. The row outlives its token:
    deleting erases the secrets and records who deleted it and when.
    """

    __table_args__ = (UniqueConstraint("company_id", "provider", "slot", name="uq_connection_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    provider: str = Field(max_length=20)
    kind: str = Field(default=ConnectionKind.long_term.value, max_length=20)
    slot: str = Field(default=ConnectionKind.long_term.value, max_length=40)
    owner_user_id: int | None = Field(default=None, foreign_key="app_user.id")

    # Compare-and-swap counter: bumped whenever the stored token changes.
    version: int = Field(default=0)
    refresh_lease_until: datetime | None = Field(default=None)
    refresh_lease_owner: str | None = Field(default=None, max_length=80)

    has_token: bool = Field(default=False)
    token_fingerprint: str | None = Field(default=None, max_length=16)
    access_expires_at: datetime | None = Field(default=None)
    refresh_expires_at: datetime | None = Field(default=None)  # Lexware: the API key's expiry
    offline_granted: bool = Field(default=False)
    scopes: str = Field(default="", max_length=1000)
    bound_client: str | None = Field(default=None, max_length=20)  # DATEV "<consultant>-<client>"
    grantor_name: str | None = Field(default=None, max_length=200)  # DATEV user / Lexware organisation
    grantor_sub: str | None = Field(default=None, max_length=255)

    requested_at: datetime | None = Field(default=None)
    requested_by: str | None = Field(default=None, max_length=254)
    last_refresh_at: datetime | None = Field(default=None)
    last_used_at: datetime | None = Field(default=None)
    last_test_at: datetime | None = Field(default=None)
    last_test_ok: bool | None = Field(default=None)
    last_test_message: str | None = Field(default=None, max_length=500)
    invalid_at: datetime | None = Field(default=None)
    invalid_reason: str | None = Field(default=None, max_length=500)
    deleted_at: datetime | None = Field(default=None)
    deleted_by: str | None = Field(default=None, max_length=254)

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PendingAuthorization(SQLModel, table=True):
    """A started DATEV login waiting for its callback. Single use, 10 minutes.

    Keyed by sha256(state); the PKCE verifier and the nonce are `StoredSecret` rows
    (owner_type "pending_authorization").
    """

    __tablename__ = "pending_authorization"

    id: int | None = Field(default=None, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True)
    company_id: int = Field(foreign_key="company.id")
    provider: str = Field(max_length=20)
    kind: str = Field(max_length=20)
    user_id: int = Field(foreign_key="app_user.id")
    redirect_uri: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class HttpLogEntry(SQLModel, table=True):
    """Technical HTTP log of every call to DATEV or Lexware (DATEV requires at least 14 days).

    Never the Authorization header, a token, a body or a query string.
    """

    __tablename__ = "http_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    provider: str = Field(max_length=20)
    method: str = Field(max_length=10)
    host: str = Field(max_length=255)
    path: str = Field(max_length=500)
    status: int | None = Field(default=None)
    duration_ms: int = Field(default=0)
    global_transaction_id: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, max_length=300)
    company_id: int | None = Field(default=None, index=True)
    connection_id: int | None = Field(default=None)
    purpose: str | None = Field(default=None, max_length=60)
    correlation_id: str | None = Field(default=None, max_length=64, index=True)
