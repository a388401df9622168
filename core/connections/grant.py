"""What a DATEV token response grants, derived from the standards first (RFC 6749, OpenID Connect), with
DATEV's extra fields only as optional refinements (docs/datev-contract.md §6).

- **Long-term** ("Langzeittoken"): the granted scope contains `offline_access` and a refresh token came
  back. The granted scope is the response's `scope`; when that is absent it is the requested scope
  (RFC 6749 §5.1). A missing vendor field never makes a token "not long-term".
- **Expiry**: DATEV's `refresh_token_expires_in` when present (a short value, such as 11 hours, then
  also means: not long-term). Otherwise derived from DATEV's documentation: 2 years for a long-term
  token (DATEV_OFFLINE_LIFETIME_DAYS), 11 hours from the login without `offline_access`; the card says
  the date is derived. With DATEV_REFRESH_ROLLING a refresh restarts a derived long-term window.
- **Bound data set**: the granted `datev:iam:client:<consultant>-<client>` scopes. The company's own
  data set → bound; none → not bound (shown as a warning); any other → refused (nothing stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.platform.config import Settings
from core.platform.models import shown_data_set
from core.providers.datev_oidc import TokenResponse

OFFLINE_SCOPE = "offline_access"
CLIENT_SCOPE_PREFIX = "datev:iam:client:"
# A refresh token that lives less than this is not a long-term token (DATEV's is about 2 years).
LONG_TERM_MIN_SECONDS = 300 * 24 * 3600
ONE_OFF_LIFETIME = timedelta(hours=11)  # DATEV refresh window without offline_access (contract §1.5)


@dataclass(frozen=True)
class GrantFacts:
    scopes: tuple[str, ...]  # as granted
    long_term: bool
    refresh_expires_at: datetime | None
    expiry_derived: bool  # the provider did not say; the date follows DATEV's documentation
    clients: tuple[str, ...]  # the granted data sets, "<consultant>-<client>"

    @property
    def bound_client(self) -> str | None:
        return self.clients[0] if len(self.clients) == 1 else None


def client_scope(client_id: str) -> str:
    return CLIENT_SCOPE_PREFIX + client_id


def granted_scopes(tokens: TokenResponse, requested: str) -> tuple[str, ...]:
    """The response's `scope`; absent (or empty) means as requested (RFC 6749 §5.1)."""
    return tuple((tokens.scope or requested).split())


def facts(tokens: TokenResponse, requested: str, settings: Settings, now: datetime) -> GrantFacts:
    scopes = granted_scopes(tokens, requested)
    long_term = OFFLINE_SCOPE in scopes and bool(tokens.refresh_token)
    if tokens.refresh_expires_in is not None:
        expires_at: datetime | None = now + timedelta(seconds=tokens.refresh_expires_in)
        derived = False
        if tokens.refresh_expires_in < LONG_TERM_MIN_SECONDS:
            long_term = False
    elif long_term:
        expires_at, derived = now + timedelta(days=settings.datev_offline_lifetime_days), True
    elif tokens.refresh_token:
        expires_at, derived = now + ONE_OFF_LIFETIME, True
    else:
        expires_at, derived = None, False
    clients = tuple(s.removeprefix(CLIENT_SCOPE_PREFIX) for s in scopes if s.startswith(CLIENT_SCOPE_PREFIX))
    return GrantFacts(scopes, long_term, expires_at, derived, clients)


def refreshed_expiry(tokens: TokenResponse, current: datetime | None, derived: bool, long_term: bool,
                     settings: Settings, now: datetime) -> tuple[datetime | None, bool]:
    """The refresh token's expiry after a refresh: the provider's value, else the derived one (a rolling
    long-term window restarts; a one-off login's 11 hours never do)."""
    if tokens.refresh_expires_in is not None:
        return now + timedelta(seconds=tokens.refresh_expires_in), False
    if derived and long_term and settings.datev_refresh_rolling:
        return now + timedelta(days=settings.datev_offline_lifetime_days), True
    return current, derived


def binding_problem(clients: tuple[str, ...], company_client: str) -> str | None:
    """Why these granted data sets cannot be stored for the company (None: they can)."""
    foreign = [c for c in clients if c != company_client]
    if not foreign:
        return None
    shown = ", ".join(shown_data_set(c) for c in foreign)
    return (f"DATEV hat den Zugriff für den Datenbestand {shown} erteilt, dieses Unternehmen hat aber "
            f"{shown_data_set(company_client)}. Bitte bei der Anmeldung den richtigen Datenbestand wählen.")
