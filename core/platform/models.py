"""All table models. Alembic (migrations/) owns the schema; every change here needs a migration.

Datetimes are timezone-aware UTC (SQLModel maps plain `datetime` to a UTC type; never add
`sa_type=DateTime(...)`). Secrets never live in these tables in clear: they are rows of
`StoredSecret`, sealed by `core.platform.crypto` and bound to their owner and purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, overload

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


_lengths: dict[int, tuple[Any, int]] = {}  # id of a column → (the column, its length)


def max_length(column: Any) -> int:
    """The length of a string column, from the model (`max_length(AlarmSent.detail)` → 1000).
    Remembered per column: reading `.type` through a model attribute is slow, and clip() is on
    the transfer path."""
    known = _lengths.get(id(column))
    if known is not None and known[0] is column:
        return known[1]
    length = int(column.type.length)
    _lengths[id(column)] = (column, length)
    return length


@overload
def clip(column: Any, text: str) -> str: ...
@overload
def clip(column: Any, text: None) -> None: ...
@overload
def clip(column: Any, text: str | None) -> str | None: ...
def clip(column: Any, text: str | None) -> str | None:
    """`text` cut to the length of a string column (`clip(Document.last_error, message)`).

    The limit comes from the model, so a truncation never drifts from the schema the way a
    hand-written `[:500]` can.
    """
    if text is None:
        return None
    limit = max_length(column)
    return text if len(text) <= limit else text[:limit]


class Role(StrEnum):
    viewer = "viewer"  # finance team: sees token health and history
    operator = "operator"  # power users: approve documents, manual transfers, retries
    admin = "admin"  # companies, tokens, users, keys, settings


class Interface(StrEnum):
    datev = "datev"
    lexware = "lexware"
    none = "none"


class Provider(StrEnum):
    datev = "datev"
    lexware = "lexware"


PROVIDER_LABELS = {Provider.datev: "DATEV", Provider.lexware: "Lexware Office"}


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
    # A provider refused access (DATEV 403/404): transfers pause until a new token is requested
    # after this moment, or an admin resumes. Pauses for a missing/invalid token are computed.
    paused_at: datetime | None = Field(default=None)
    paused_reason: str | None = Field(default=None, max_length=500)
    alarm_recipients: str = Field(default="", max_length=1000)  # comma-separated e-mail addresses
    inbox_dir: str | None = Field(default=None, max_length=500)  # folder the scheduler imports from
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def provider(self) -> Provider | None:
        """The provider behind the company's interface (None: no interface)."""
        return {Interface.datev.value: Provider.datev, Interface.lexware.value: Provider.lexware}.get(self.interface)

    @property
    def datev_client_id(self) -> str | None:
        """DATEV's technical client id `<consultant>-<client>`, or None without both numbers."""
        if self.consultant_number is None or self.client_number is None:
            return None
        return f"{self.consultant_number}-{self.client_number}"


def shown_data_set(client_id: str | None, empty: str = "") -> str:
    """A DATEV data set `<consultant>-<client>` as people read it, "455148–1" (an en dash, as DATEV writes
    Berater-Nr.–Mandanten-Nr.); `empty` when there is none."""
    return empty if client_id is None else client_id.replace("-", "–")


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
    """A known value sealed with each key, so a wrong key is detected at start, not on first use.

    `primary_since` records which key is the primary: `rotate-keys` stamps the new primary, and the
    row with the latest stamp is the key every process must seal with (core.platform.secret_store)."""

    __tablename__ = "key_check"

    key_id: str = Field(primary_key=True, max_length=80)
    ciphertext: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    primary_since: datetime | None = Field(default=None)


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
    access_ttl_seconds: int | None = Field(default=None)  # the access token's lifetime (expires_in)
    refresh_expires_at: datetime | None = Field(default=None)  # Lexware: the API key's expiry
    # True: the provider sent no refresh_token_expires_in; the expiry follows DATEV's documented lifetime.
    refresh_expiry_derived: bool = Field(default=False)
    # A refresh whose answer was lost (timeout after sending, dropped connection, 5xx): the provider may have
    # rotated the token. Until decided, the old refresh token is not sent again (core.connections.access).
    refresh_unclear_since: datetime | None = Field(default=None)
    offline_granted: bool = Field(default=False)
    scopes: str = Field(default="", max_length=1000)
    bound_client: str | None = Field(default=None, max_length=20)  # DATEV "<consultant>-<client>"
    grantor_name: str | None = Field(default=None, max_length=200)  # DATEV user / Lexware organisation
    grantor_sub: str | None = Field(default=None, max_length=255)

    requested_at: datetime | None = Field(default=None)
    requested_by: str | None = Field(default=None, max_length=254)
    requested_via: str | None = Field(default=None, max_length=300)  # e.g. "Anforderungslink für stb@kanzlei.de"
    last_refresh_at: datetime | None = Field(default=None)
    last_used_at: datetime | None = Field(default=None)
    last_test_at: datetime | None = Field(default=None)
    last_test_ok: bool | None = Field(default=None)
    last_test_message: str | None = Field(default=None, max_length=500)
    invalid_at: datetime | None = Field(default=None)
    invalid_reason: str | None = Field(default=None, max_length=500)
    deleted_at: datetime | None = Field(default=None)
    deleted_by: str | None = Field(default=None, max_length=254)
    # Deleted here, but the provider may still hold the access (DATEV did not confirm the revocation; a
    # Lexware key has no revocation by API): what the person must do there. Shown while the row has no token.
    left_at_provider: str | None = Field(default=None, max_length=500)

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
    scope: str = Field(default="", max_length=1000)  # as requested: what was granted when `scope` is absent
    # Started through an Anforderungslink (no Token Desk sign-in; user_id is the admin who made the link).
    request_link_id: int | None = Field(default=None, foreign_key="request_link.id")
    # For link logins: sha256 of the browser that started it (its Streamlit XSRF cookie secret); the
    # callback must come from the same browser.
    browser_hash: str | None = Field(default=None, max_length=64)
    # Where the page that started the login continues, with its selection (a one-off login from
    # Übertragen: "documents=1,2,3"); the callback page validates it. None: the Langzeittoken page.
    return_to: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class RequestLink(SQLModel, table=True):
    """An Anforderungslink: lets the person who can log in to DATEV for a company's data set grant the
    Langzeittoken without a Token Desk account. Only the sha256 of the link's secret is stored; single
    use (consumed when the DATEV login starts), expires, can be withdrawn (core.connections.request_links)."""

    __tablename__ = "request_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    created_by_user_id: int = Field(foreign_key="app_user.id")
    created_by: str = Field(max_length=254)  # the admin's e-mail address, as shown
    created_by_name: str = Field(default="", max_length=200)
    recipient: str | None = Field(default=None, max_length=254)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    started_at: datetime | None = Field(default=None)  # the DATEV login began: the link is used up
    finished_at: datetime | None = Field(default=None)
    succeeded: bool | None = Field(default=None)
    result: str | None = Field(default=None, max_length=500)  # the German outcome shown on the link page
    grantor_name: str | None = Field(default=None, max_length=200)  # the DATEV user who granted it
    withdrawn_at: datetime | None = Field(default=None)
    withdrawn_by: str | None = Field(default=None, max_length=254)


class LinkAttempt(SQLModel, table=True):
    """Tries with unknown, used, expired or withdrawn links per client address (sha256), for the rate limit."""

    __tablename__ = "link_attempt"

    address_hash: str = Field(primary_key=True, max_length=64)
    window_started_at: datetime
    failures: int = Field(default=0)


class SignInReturn(SQLModel, table=True):
    """The page a signed-out browser asked for (a deep link), kept across the sign-in round trip, which
    always lands on `/`: keyed by sha256 of the browser's Streamlit XSRF secret (ui.link_client), taken
    once after sign-in (core.sign_in_return). `target` is a page's url_path and query, validated again
    against the page table before use."""

    __tablename__ = "sign_in_return"

    browser_hash: str = Field(primary_key=True, max_length=64)
    target: str = Field(max_length=300)
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


class DocumentStatus(StrEnum):
    new = "new"  # neu
    approved = "approved"  # freigegeben
    transferring = "transferring"  # in Übertragung
    delivered = "delivered"  # übertragen
    failed = "failed"  # fehlgeschlagen
    unresolved = "unresolved"  # ungeklärt (Lexware: outcome unknown, never re-sent automatically)


# The statuses a claim can take a document from (approved, or transferring with an expired lease), as the
# literal SQL of the partial index ix_document_claimable; a claim's query repeats it literally, so both
# databases see that the index covers it.
CLAIMABLE_STATUSES = "status IN ('approved', 'transferring')"


class Document(SQLModel, table=True):
    """A Beleg. Its GUID is fixed at intake, before any attempt: DATEV's PUT with it makes delivery
    exactly once (a repeat answers 409 #DCO01012). The content lives in `document_content`."""

    __table_args__ = (
        UniqueConstraint("company_id", "sha256", name="uq_document_company_content"),
        Index("ix_document_due", "status", "next_attempt_at"),
        Index("ix_document_company_status", "company_id", "status"),
        # A claim's read: the company's backlog in approval order, never its delivered history (migrations 0009,
        # 0010). No other index gives that order, so it is the one plan for a claim (see lifecycle.claim).
        Index("ix_document_claimable", "company_id", "approved_at", "id", postgresql_where=text(CLAIMABLE_STATUSES),
              sqlite_where=text(CLAIMABLE_STATUSES)),
    )

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id")
    guid: str = Field(max_length=36, unique=True)
    status: str = Field(default=DocumentStatus.new.value, max_length=20)
    file_name: str = Field(max_length=255)
    original_name: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    media_type: str = Field(max_length=60)
    document_type: str | None = Field(default=None, max_length=30)
    note: str | None = Field(default=None, max_length=255)
    source: str = Field(default="upload", max_length=20)
    uploaded_at: datetime = Field(default_factory=utcnow)
    uploaded_by: str = Field(max_length=254)
    approved_at: datetime | None = Field(default=None)
    approved_by: str | None = Field(default=None, max_length=254)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None)
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_until: datetime | None = Field(default=None)
    delivered_at: datetime | None = Field(default=None)
    remote_id: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, max_length=500)
    last_error_code: str | None = Field(default=None, max_length=20)
    last_help_uri: str | None = Field(default=None, max_length=300)
    updated_at: datetime = Field(default_factory=utcnow)


class DocumentContent(SQLModel, table=True):
    """The file bytes, in the database so every scheduler replica on any host reaches them."""

    __tablename__ = "document_content"

    document_id: int = Field(foreign_key="document.id", primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TransferAttempt(SQLModel, table=True):
    """One attempt to deliver one document: the transfer history."""

    __tablename__ = "transfer_attempt"
    __table_args__ = (
        Index("ix_attempt_started", "started_at"),
        Index("ix_attempt_company_started", "company_id", "started_at"),
        Index("ix_attempt_outcome_started", "outcome", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    company_id: int = Field(foreign_key="company.id")
    provider: str = Field(max_length=20)
    trigger: str = Field(max_length=20)  # scheduler | manual
    triggered_by: str = Field(max_length=254)
    attempt_no: int
    started_at: datetime
    finished_at: datetime
    outcome: str = Field(max_length=20)  # delivered | retry | failed | unresolved | paused
    http_status: int | None = Field(default=None)
    error_code: str | None = Field(default=None, max_length=20)
    error_text: str | None = Field(default=None, max_length=500)
    help_uri: str | None = Field(default=None, max_length=300)
    global_transaction_id: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(default=None, max_length=100)
    remote_id: str | None = Field(default=None, max_length=100)
    next_retry_at: datetime | None = Field(default=None)
    correlation_id: str = Field(max_length=64)


class DocumentTypeCache(SQLModel, table=True):
    """A company's DATEV document types (Belegtypen), fetched and cached."""

    __tablename__ = "document_type_cache"
    __table_args__ = (UniqueConstraint("company_id", "name", name="uq_document_type"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id")
    name: str = Field(max_length=30)
    category: str | None = Field(default=None, max_length=40)
    debit_credit: str | None = Field(default=None, max_length=10)
    fetched_at: datetime = Field(default_factory=utcnow)


class SchedulerHeartbeat(SQLModel, table=True):
    """One row per scheduler process (lets the dashboard tell whether the scheduler runs) and per
    dashboard process (`kind`). `key_ids` is the key set the process holds, primary first, so
    `remove-key` can tell whether a live process might still seal with a key."""

    __tablename__ = "scheduler_heartbeat"

    instance_id: str = Field(primary_key=True, max_length=80)
    kind: str = Field(default="scheduler", max_length=20)  # core.heartbeat.SCHEDULER or DASHBOARD
    key_ids: str | None = Field(default=None, max_length=500)  # "k2,k1": primary first
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime
    last_tick_at: datetime
    stopped_at: datetime | None = Field(default=None)
    last_pass: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class AlarmSent(SQLModel, table=True):
    """Each alarm once: its dedupe key is unique. The row is also the send claim and the retry queue
    (core.alarms.outbox): `next_attempt_at` is the end of a running send's lease or the time of the next
    retry, and NULL once the alarm is final (delivered, given up, or no targets). Title and body are
    kept for the retry; alarm texts never contain secrets."""

    __tablename__ = "alarm_sent"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    company_id: int | None = Field(default=None, index=True)
    title: str = Field(max_length=300)
    body: str = Field(default="", sa_type=Text)
    severity: str = Field(default="error", max_length=10)  # core.alarms.messages.Severity
    sent_at: datetime = Field(default_factory=utcnow)  # first attempt; retention counts from here
    delivered: bool = Field(default=False)
    detail: str | None = Field(default=None, max_length=1000)
    attempts: int = Field(default=1)  # send attempts started (every claim counts one)
    next_attempt_at: datetime | None = Field(default=None, index=True)
    # A message to one person (an Anforderungslink): sent to this address only, never to the alarm targets.
    direct_to: str | None = Field(default=None, max_length=254)
    # The link the message carries: put into the body at send time from its encrypted secret, never stored
    # in clear (the body holds "{link}").
    request_link_id: int | None = Field(default=None)


class RateSlot(SQLModel, table=True):
    """Cross-process rate limiting (Lexware: 2 requests/s per API key across all workers)."""

    __tablename__ = "rate_slot"

    key: str = Field(primary_key=True, max_length=80)
    next_free_at: datetime
