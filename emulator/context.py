"""Access to the app's EmulatorState from inside a request."""

from __future__ import annotations

from flask import current_app

EXTENSION_KEY = "token_desk_emulator"


def emulator_state():
    return current_app.extensions[EXTENSION_KEY]
