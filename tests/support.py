"""Constants and small helpers for tests (no fixtures here)."""

import io

from pypdf import PdfWriter

# A fixed key for tests only (never used outside the test suite).
TEST_KEY_ENTRY = "test-k1:" + "A" * 43


def pdf(label: str = "") -> bytes:
    """A small valid PDF whose bytes (and so its sha256) differ per label."""
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": label or "Beleg"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
