"""Unauthenticated admin/test API under /_admin (loopback use only)."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import Blueprint, current_app, jsonify, request

from . import datev_tokens as tokens
from .config import EmulatorConfig
from .context import emulator_state

bp = Blueprint("admin", __name__, url_prefix="/_admin")
MAX_KEY_LIFETIME = 730 * 86400


def _body() -> dict:
    return request.get_json(silent=True) or {}


def _bad(message: str):
    return jsonify({"error": message}), 400


@bp.get("/health")
def health():
    return jsonify({"ok": True})


@bp.post("/reset")
def reset():
    emulator_state().reset()
    current_app.extensions["token_desk_faults"].clear()
    current_app.extensions["token_desk_buckets"].clear()
    return jsonify({"ok": True})


@bp.get("/stats")
def stats():
    state = emulator_state()
    with state.lock:
        return jsonify(state.data["stats"])


@bp.route("/clock", methods=["GET", "POST"])
def clock():
    state = emulator_state()
    if request.method == "POST":
        state.clock.set_offset(float(_body().get("offset_seconds", 0)))
    return jsonify({"offset_seconds": state.clock.offset, "now": state.clock.iso()})


@bp.route("/config", methods=["GET", "POST"])
def config():
    """Change profile switches at runtime (EmulatorConfig.RUNTIME_FIELDS); /_admin/reset restores them."""
    state = emulator_state()
    if request.method == "POST":
        body = _body()
        unknown = sorted(set(body) - set(EmulatorConfig.RUNTIME_FIELDS))
        if unknown:
            return _bad(f"not changeable at runtime: {', '.join(unknown)}")
        with state.lock:
            for name, value in body.items():
                setattr(state.config, name, tuple(value) if isinstance(value, list) else value)
    return jsonify({name: getattr(state.config, name) for name in EmulatorConfig.RUNTIME_FIELDS})


@bp.post("/datev/clients")
def register_client():
    body, state = _body(), emulator_state()
    client_id = body.get("client_id") or state.config.datev_client_id
    with state.lock:
        clients = state.data["datev_oauth_clients"]
        client = clients.setdefault(client_id, {"client_id": client_id, "secret": body.get("client_secret", ""),
                                                "name": body.get("name", client_id), "redirect_uris": []})
        if body.get("client_secret"):
            client["secret"] = body["client_secret"]
        for uri in body.get("redirect_uris", []):
            if uri not in client["redirect_uris"]:
                client["redirect_uris"].append(uri)
        state.changed()
        return jsonify({k: v for k, v in client.items() if k != "secret"})


def _grant_view(state, grant: dict) -> dict:
    person = state.data["persons"].get(grant["person_id"], {})
    return {**grant, "person_name": person.get("name"), "login_at": state.clock.iso(grant["login_at"]),
            "created_at": state.clock.iso(grant["created_at"]),
            "last_used_at": state.clock.iso(grant["last_used_at"])}


@bp.get("/datev/grants")
def list_grants():
    state = emulator_state()
    with state.lock:
        return jsonify([_grant_view(state, g) for g in state.data["grants"].values()])


@bp.post("/datev/grants/revoke")
def revoke_grants():
    body, state = _body(), emulator_state()
    if not (body.get("all") or body.get("person") or body.get("client_id") or body.get("grant_id")):
        return _bad("give person, client_id, grant_id or all=true")
    revoked = []
    with state.lock:
        for grant in state.data["grants"].values():
            if not body.get("all") and any(
                body.get(field) and grant[key] != body[field]
                for field, key in (("person", "person_id"), ("client_id", "client_id"), ("grant_id", "id"))
            ):
                continue
            if tokens.revoke_grant(state, grant["id"]):
                revoked.append(grant["id"])
        state.changed()
    return jsonify({"revoked": revoked})


@bp.post("/datev/grants/age")
def age_grants():
    """Move the login of the grants for `client_id` back by `seconds` (the demo's "läuft bald ab": with
    offline_refresh_mode "fixed", the next refresh answers login + refresh_ttl_offline - now)."""
    body, state = _body(), emulator_state()
    try:
        seconds = float(body.get("seconds", 0))
    except (TypeError, ValueError):
        return _bad("seconds must be a number")
    scope = f"datev:iam:client:{body.get('client_id', '')}"
    aged = []
    with state.lock:
        for grant in state.data["grants"].values():
            if scope in grant.get("scope", []) and not grant.get("revoked"):
                grant["login_at"] -= seconds
                grant["created_at"] -= seconds
                aged.append(grant["id"])
        state.changed()
    return jsonify({"aged": aged})


@bp.post("/datev/rights/remove")
def remove_right():
    return _change_right(add=False)


@bp.post("/datev/rights/add")
def add_right():
    return _change_right(add=True)


def _change_right(*, add: bool):
    """A person gains or loses the right on a Mandant (`{"person", "client_id"}`)."""
    body, state = _body(), emulator_state()
    client_id = body.get("client_id")
    with state.lock:
        person = state.data["persons"].get(body.get("person", ""))
        if not person:
            return _bad("unknown person")
        if add and client_id not in state.data["companies"]:
            return _bad("unknown client")
        if add and client_id not in person["rights"]:
            person["rights"].append(client_id)
        elif not add and client_id in person["rights"]:
            person["rights"].remove(client_id)
        state.changed()
        return jsonify({"person": person["id"], "rights": person["rights"]})


@bp.get("/datev/uploads")
def list_uploads():
    state = emulator_state()
    with state.lock:
        return jsonify(list(state.data["uploads"]))


@bp.get("/lexware/files")
def list_lexware_files():
    state = emulator_state()
    with state.lock:
        return jsonify([{k: v for k, v in f.items() if k != "content_b64"}
                        for f in state.data["lexware_files"].values()])


def _timestamp(value) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


@bp.post("/lexware/keys")
def create_key():
    body, state = _body(), emulator_state()
    now = state.clock.now()
    try:
        expires_at = _timestamp(body["expires_at"]) if body.get("expires_at") else now + MAX_KEY_LIFETIME
    except ValueError:
        return _bad("expires_at must be epoch seconds or ISO 8601")
    if expires_at > now + MAX_KEY_LIFETIME:
        return _bad("Lexware keys are valid for at most 24 months")
    key = body.get("key") or secrets.token_urlsafe(32)
    with state.lock:
        state.data["lexware_keys"][key] = {"expires_at": expires_at, "revoked": False}
        state.changed()
    return jsonify({"key": key, "expires_at": state.clock.iso(expires_at)})


@bp.post("/lexware/keys/revoke")
def revoke_key():
    body, state = _body(), emulator_state()
    with state.lock:
        record = state.data["lexware_keys"].get(body.get("key", ""))
        if not record:
            return _bad("unknown key")
        record["revoked"] = True
        state.changed()
    return jsonify({"ok": True})


@bp.route("/faults", methods=["GET", "POST", "DELETE"])
def faults():
    registry = current_app.extensions["token_desk_faults"]
    if request.method == "POST":
        try:
            registry.add(_body())
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
    elif request.method == "DELETE":
        registry.clear()
    return jsonify(registry.list())
