"""All emulator state: one JSON-able dict guarded by one lock, optionally persisted on every change."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

from . import demo_data
from .clock import Clock
from .config import EmulatorConfig
from .signing import generate_key_dict

STAT_NAMES = (
    "token_requests", "refresh_requests", "refresh_successes", "reuse_detections", "revocations",
    "uploads_accepted", "lexware_uploads",
)


def fresh_data(config: EmulatorConfig, now: float) -> dict:
    """Demo data as after a reset (the signing key and clock offset are kept by the caller)."""
    datev_client = {
        "client_id": config.datev_client_id,
        "secret": config.datev_client_secret,
        "name": "Token Desk (Demo)",
        "redirect_uris": list(config.datev_redirect_uris),
    }
    return {
        "clock_offset": 0.0,
        "datev_oauth_clients": {config.datev_client_id: datev_client},
        "persons": demo_data.datev_persons(),
        "companies": demo_data.datev_companies(),
        "pending_authorizations": {},
        "auth_codes": {},
        "grants": {},
        "access_tokens": {},
        "refresh_tokens": {},
        "uploads": [],
        "alarms": [],  # received by the demo alarm webhook (alarm_inbox.py)
        "lexware_keys": {config.lexware_api_key: {"expires_at": now + 730 * 86400, "revoked": False}},
        "lexware_files": {},
        "lexware_vouchers": {},
        "idp_codes": {},
        "idp_tokens": {},
        "stats": {**dict.fromkeys(STAT_NAMES, 0), "requests_by_path": {}},
    }


class EmulatorState:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.initial_config = dataclasses.replace(config)
        self.lock = threading.RLock()
        self._upload_keys: tuple[list, list[int], set[tuple[str, str]], set[tuple[str, str]]] | None = None
        self.clock = Clock(self)
        self.path = Path(config.state_file) if config.state_file else None
        self.data: dict = {}
        if self.path and self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        if not self.data:
            self.data = fresh_data(config, self.clock.now())
        # A kept state learns the redirect URIs configured now (e.g. `make run` with another PUBLIC_URL).
        client = self.data.get("datev_oauth_clients", {}).get(config.datev_client_id)
        if client is not None:
            client["redirect_uris"] += [u for u in config.datev_redirect_uris if u not in client["redirect_uris"]]
        self.data.setdefault("signing_key", generate_key_dict())
        self.changed()

    def upload_keys(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(client id, GUID) and (client id, duplicate key) of every stored upload, for the upload checks
        (DATEV's 409 #DCO01012 and its duplicate fault) without a scan of every upload per upload (the scan
        made each upload dearer than the one before: 0.3 ms more per 5,000 stored, in the transfer benchmark).
        Derived, never persisted: caught up with the list, which only grows, at each call; rebuilt when the
        list was replaced (reset, state file) or shortened. Call with the lock held."""
        uploads = self.data["uploads"]
        cache = self._upload_keys
        if cache is None or cache[0] is not uploads or cache[1][0] > len(uploads):
            cache = self._upload_keys = (uploads, [0], set(), set())
        _, seen, guids, duplicates = cache
        for upload in uploads[seen[0]:]:
            guids.add((upload["client_id"], upload["guid"]))
            if upload.get("duplicate_key"):
                duplicates.add((upload["client_id"], upload["duplicate_key"]))
        seen[0] = len(uploads)
        return guids, duplicates

    def reset(self) -> None:
        with self.lock:
            for name in EmulatorConfig.RUNTIME_FIELDS:  # switches set by a test go back to the start values
                setattr(self.config, name, getattr(self.initial_config, name))
            key = self.data["signing_key"]
            self.data = fresh_data(self.config, self.clock.now() - self.clock.offset)
            self.data["signing_key"] = key
            self.changed()

    def changed(self) -> None:
        """Persist after a change (call with the lock held)."""
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        # The file holds (emulated) tokens and the signing key: owner-only, like data/encryption.keys.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older 0644 temp file keeps its mode on O_CREAT
            handle.write(json.dumps(self.data))
        os.replace(tmp, self.path)

    def count(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.data["stats"][name] = self.data["stats"].get(name, 0) + amount

    def count_path(self, path: str) -> None:
        with self.lock:
            by_path = self.data["stats"]["requests_by_path"]
            by_path[path] = by_path.get(path, 0) + 1
