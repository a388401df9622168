"""The link page's view of its visitor: the browser's XSRF secret survives re-masking, the address
behind a reverse proxy is the one the proxy saw."""

from __future__ import annotations

import binascii
import os

from ui.link_client import forwarded_address, xsrf_secret


def masked(token: bytes, mask: bytes) -> str:
    """A cookie value as Streamlit's server writes it (version 2)."""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(token))
    return f"2|{binascii.b2a_hex(mask).decode()}|{binascii.b2a_hex(body).decode()}|1764410000"


def test_the_same_browser_reads_the_same_secret_under_every_mask() -> None:
    token = os.urandom(16)
    first, second = masked(token, b"\x01\x02\x03\x04"), masked(token, b"\xaa\xbb\xcc\xdd")
    assert first != second
    assert xsrf_secret(first) == xsrf_secret(second) == token.hex()
    assert xsrf_secret(masked(os.urandom(16), b"\x01\x02\x03\x04")) != token.hex()


def test_a_missing_or_broken_cookie_gives_no_secret() -> None:
    assert xsrf_secret(None) == xsrf_secret("") == xsrf_secret("2|zz|00|1") == xsrf_secret("2|01|02") == ""
    assert xsrf_secret(token_hex := os.urandom(16).hex()) == token_hex  # version 1: the token itself


def test_the_address_behind_the_proxy_is_the_right_most_forwarded_one() -> None:
    assert forwarded_address("198.51.100.9, 203.0.113.7") == "203.0.113.7"  # a client cannot put itself last
    assert forwarded_address(None) == forwarded_address(" , ") == ""
