"""The one base class of every provider error (DATEV login, DATEV API, Lexware API).

Messages never contain a token, a code or a secret, so they may be logged; what the user sees is
chosen by the caller (core raises UserFacingError with a German text).
"""

from __future__ import annotations


class ProviderError(Exception):
    """A call to DATEV or Lexware Office did not give the expected answer."""
