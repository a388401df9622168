"""Deleting a token ("Langzeittoken löschen", "API-Schlüssel löschen"): revoke at the provider,
then erase locally, keeping the history (DATEV MUST: disconnect deletes locally and calls /revoke).
What the provider may still hold afterwards is said, and kept on the card (`Connection.left_at_provider`)."""

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
LEXWARE_PUBLIC_API_URL = "https://app.lexware.de/addons/public-api"  # where an admin creates and deletes keys
LEXWARE_KEY_LEFT = ("In Lexware Office bleibt der Schlüssel gültig, bis er dort gelöscht wird oder abläuft (Lexware "
                    f"bietet keinen Widerruf über die Schnittstelle): bitte unter {LEXWARE_PUBLIC_API_URL} löschen, "
                    "wenn er nicht mehr gebraucht wird.")


@dataclass(frozen=True)
class DeleteResult:
    revoked: bool  # the provider confirmed that the access is gone (False: see `message`, and the card says so)
    message: str


def delete_token(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: Actor,
                 reason: str = "") -> DeleteResult:
    """An admin deletes a token: revoke at the provider, then erase locally, keeping the history.

    If DATEV does not confirm the revocation the secret is erased anyway, and the message and the card
    (`left_at_provider`) point to DATEV's "Verbundene Anwendungen". A Lexware Office API key cannot be
    revoked through the API: it is erased here and the card says where to delete it at Lexware.
    """
    authorized(engine, actor, Role.admin)
    return revoke_and_erase(engine, settings, keyring, connection_id=connection_id, actor=actor.name, reason=reason)


def revoke_and_erase(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: str,
                     reason: str = "") -> DeleteResult:
    """`delete_token` after the permission check (also used by a new login replacing the old token)."""
    row = store.get(engine, connection_id)
    if row is None or not row.has_token:
        raise UserFacingError("Für diese Verbindung ist kein Token hinterlegt.")
    if row.provider == Provider.lexware.value:
        store.erase_deleted(engine, connection_id, actor=actor, revoked_at_provider=False,
                            left_at_provider=LEXWARE_KEY_LEFT, reason=reason)
        return DeleteResult(False, f"API-Schlüssel hier gelöscht. {LEXWARE_KEY_LEFT}")
    refresh_token = store.refresh_token_of(engine, keyring, connection_id)
    revoke_error = ""
    if refresh_token:
        ctx = CallContext(provider=row.provider, purpose="revoke", company_id=row.company_id, connection_id=row.id)
        try:
            revoke(engine, ctx, discover(engine, settings), settings, token=refresh_token, hint="refresh_token")
        except (ProviderRejected, ProviderUnavailable) as exc:  # refused, or no answer: it may have happened or not
            revoke_error = str(exc)[:200] or type(exc).__name__
    left = (f"DATEV hat den Widerruf nicht bestätigt ({revoke_error}); der dauerhafte Zugriff kann dort noch "
            f"bestehen. Bitte unter „Verbundene Anwendungen“ bei DATEV ({DATEV_CONNECTED_APPS_URL}) prüfen und "
            "entfernen." if revoke_error else None)
    store.erase_deleted(engine, connection_id, actor=actor, revoked_at_provider=not revoke_error,
                        revoke_error=revoke_error, left_at_provider=left, reason=reason)
    if left is None:
        return DeleteResult(True, "Langzeittoken gelöscht und bei DATEV widerrufen." if refresh_token else
                            "Token gelöscht (kein Refresh-Token, das bei DATEV zu widerrufen war).")
    return DeleteResult(False, f"Langzeittoken hier gelöscht. {left}")
