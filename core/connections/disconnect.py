"""Deleting a token ("Langzeittoken löschen", "API-Schlüssel löschen"): revoke at the provider,
then erase locally, keeping the history (DATEV MUST: disconnect deletes locally and calls /revoke)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from core.connections import store
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.errors import UserFacingError
from core.platform.models import Provider, Role
from core.providers.datev_oidc import ProviderRejected, ProviderUnavailable, discover, revoke
from core.providers.http import CallContext
from core.users import Actor, authorized

DATEV_CONNECTED_APPS_URL = "https://apps.datev.de/tokrevui"


@dataclass(frozen=True)
class DeleteResult:
    revoked: bool
    message: str


def delete_token(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: Actor,
                 reason: str = "") -> DeleteResult:
    """An admin deletes a token: revoke at the provider, then erase locally, keeping the history.

    If the revoke call fails the secret is erased anyway and the result says so, pointing to
    DATEV's "Verbundene Anwendungen".
    """
    authorized(engine, actor, Role.admin)
    return revoke_and_erase(engine, settings, keyring, connection_id=connection_id, actor=actor.name, reason=reason)


def revoke_and_erase(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: str,
                     reason: str = "") -> DeleteResult:
    """`delete_token` after the permission check (also used by a new login replacing the old token)."""
    row = store.get(engine, connection_id)
    if row is None or not row.has_token:
        raise UserFacingError("Für diese Verbindung ist kein Token hinterlegt.")
    refresh_token = store.refresh_token_of(engine, keyring, connection_id)
    revoked, revoke_error = True, ""
    if row.provider == Provider.datev.value and refresh_token:
        ctx = CallContext(provider=row.provider, purpose="revoke", company_id=row.company_id, connection_id=row.id)
        try:
            revoke(engine, ctx, discover(engine, settings), settings, token=refresh_token, hint="refresh_token")
        except (ProviderRejected, ProviderUnavailable) as exc:
            revoked, revoke_error = False, str(exc)[:200]
    store.erase_deleted(engine, connection_id, actor=actor, revoked_at_provider=revoked, revoke_error=revoke_error,
                        reason=reason)
    if revoked:
        return DeleteResult(True, "Token gelöscht und beim Anbieter widerrufen.")
    return DeleteResult(False, "Token lokal gelöscht, aber der Widerruf beim Anbieter ist fehlgeschlagen "
                               f"({revoke_error}). Bitte den Zugriff unter „Verbundene Anwendungen“ bei DATEV "
                               f"({DATEV_CONNECTED_APPS_URL}) selbst entfernen.")
