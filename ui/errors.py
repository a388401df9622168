"""The dashboard's last line of defence against a traceback in the browser.

Every page runs inside `error_boundary()` (the router wraps `navigation.run()`). An error nobody
handled becomes a German message with a short reference number; the traceback goes to the server
log under that number, never to the browser (`client.showErrorDetails = "none"` is the second
fence). Streamlit's own control flow (st.stop, st.rerun, st.switch_page) raises BaseException
subclasses and passes through untouched.

What reaches the log: the exception and its traceback. SQL statement parameters are not in it
(the engines are created with `hide_parameters=True`), and the product's own exceptions never
carry token values.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.exc import InterfaceError as SQLInterfaceError

log = logging.getLogger("tokendesk.dashboard")

DATABASE_DOWN = ("Die Datenbank ist gerade nicht erreichbar. Bitte versuchen Sie es in einer Minute erneut; "
                 "bleibt der Fehler, nennen Sie der Administration die Fehlernummer {reference}.")
UNEXPECTED = ("Ein unerwarteter Fehler ist aufgetreten (Fehlernummer {reference}). Bitte prüfen Sie, ob Ihre "
              "letzte Aktion übernommen wurde, und versuchen Sie es erneut; bleibt der Fehler, nennen Sie der "
              "Administration die Fehlernummer.")


def message_for(exc: Exception, reference: str) -> str:
    """The German text for an unhandled error (never the exception's own text)."""
    if isinstance(exc, OperationalError | DisconnectionError | SQLInterfaceError):
        return DATABASE_DOWN.format(reference=reference)
    return UNEXPECTED.format(reference=reference)


@contextmanager
def error_boundary() -> Iterator[None]:
    """Show an unexpected error as a German message with a reference; log the details under it."""
    try:
        yield
    except Exception as exc:  # the boundary: everything not handled closer to its cause
        reference = uuid.uuid4().hex[:8]
        log.error("dashboard error %s (%s)", reference, type(exc).__name__, exc_info=exc)
        st.error(message_for(exc, reference), icon=":material/error:")
