"""Sample documents for tests and benchmarks."""

from __future__ import annotations

import io

from pypdf import PdfWriter


def pdf(label: str = "") -> bytes:
    """A small valid PDF whose bytes (and so its sha256) differ per label."""
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": label or "Beleg"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
