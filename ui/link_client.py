"""Who is on the link page (pages/anforderung.py): the client address, for the limit on tries with bad
links, and the browser, to which the DATEV login started from a link is bound.

The browser: Streamlit's XSRF cookie (`_streamlit_xsrf`, on by default and stated in
.streamlit/config.toml) holds 16 random bytes per browser that stay the same across page loads; only
its masking changes on each load. The cookie's format (Tornado's, kept by Streamlit's server) is
`2|<mask hex>|<masked token hex>|<timestamp>`, the token being the masked bytes XOR the 4-byte mask
repeated; version 1 is the token's hex alone. We read it ourselves rather than import Streamlit's
private helper. Without the cookie the link page refuses to start (core.connections.request_links).

The address: the WebSocket peer's address. Streamlit reports None for a loopback peer; that is the
reverse proxy of a production setup (README), so then the address the proxy saw is taken from the
right end of X-Forwarded-For. Without either, all such tries share one bucket ("lokal").
"""

from __future__ import annotations

import binascii

import streamlit as st

XSRF_COOKIE = "_streamlit_xsrf"


def xsrf_secret(cookie: str | None) -> str:
    """The browser's XSRF token (hex) from the cookie's value; "" when absent or unreadable."""
    value = (cookie or "").strip("\"'")
    try:
        if value.startswith("2|"):
            _version, mask_hex, masked_hex, _timestamp = value.split("|")
            mask, masked = binascii.a2b_hex(mask_hex), binascii.a2b_hex(masked_hex)
            if len(mask) != 4 or not masked:
                return ""
            return bytes(b ^ mask[i % 4] for i, b in enumerate(masked)).hex()
        return binascii.a2b_hex(value).hex() if value else ""
    except (ValueError, binascii.Error):
        return ""


def browser_identity() -> str:
    return xsrf_secret(st.context.cookies.get(XSRF_COOKIE))


def forwarded_address(header: str | None) -> str:
    """The address the reverse proxy saw: the right-most entry of X-Forwarded-For."""
    entries = [e.strip() for e in (header or "").split(",") if e.strip()]
    return entries[-1][:64] if entries else ""


def client_address() -> str:
    peer = st.context.ip_address
    if peer:
        return peer
    return forwarded_address(st.context.headers.get("X-Forwarded-For")) or "lokal"
