"""File checks shared by the DATEV and Lexware stand-ins: names, magic bytes, PDF parsing, hashes."""

from __future__ import annotations

import hashlib
import io
import unicodedata
import xml.etree.ElementTree as ET

from pypdf import PdfReader

MEDIA_TYPES = {
    "pdf": ("application/pdf",),
    "png": ("image/png",),
    "jpg": ("image/jpeg", "image/jpg", "image/pjpeg"),
    "jpeg": ("image/jpeg", "image/jpg", "image/pjpeg"),
    "gif": ("image/gif",),
    "tif": ("image/tiff",),
    "tiff": ("image/tiff",),
    "xml": ("application/xml", "text/xml"),
}

_EXTRA_ALLOWED = set(" &()+-._")


def _allowed_char(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch in _EXTRA_ALLOWED
    return 0xC0 <= ord(ch) <= 0xFF and ch not in "×÷"  # Latin-1 accented letters


def sanitize_filename(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    return "".join(ch if _allowed_char(ch) else "_" for ch in name)


def extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def magic_matches(ext: str, data: bytes) -> bool:
    if ext == "pdf":
        return data.startswith(b"%PDF-")
    if ext == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if ext in ("jpg", "jpeg"):
        return data.startswith(b"\xff\xd8\xff")
    if ext == "gif":
        return data[:6] in (b"GIF87a", b"GIF89a")
    if ext in ("tif", "tiff"):
        return data[:4] in (b"II*\x00", b"MM\x00*")
    if ext == "xml":
        return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
    return False


def content_type_matches(ext: str, content_type: str | None) -> bool:
    """A missing part Content-Type is accepted (only the magic bytes are checked)."""
    if not content_type:
        return True
    return content_type.split(";")[0].strip().lower() in MEDIA_TYPES.get(ext, ())


def pdf_parseable(data: bytes) -> bool:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        return len(reader.pages) >= 1
    except Exception:  # noqa: BLE001  (pypdf raises many kinds: any of them means "not parseable")
        return False


def xml_root(data: bytes) -> str | None:
    try:
        return ET.fromstring(data).tag
    except ET.ParseError:
        return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
