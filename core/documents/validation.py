"""Checks a document file (Beleg) at intake, before anything is stored or sent.

The rules mirror what DATEV (accounting-documents, docs/datev-contract.md §2.4/§2.6/§7.3) and Lexware
Office (§3/§7.5) would reject, so the user hears about a bad file at once and in German, not after
a failed Übertragung. Pure functions: no database, no Streamlit.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from pypdf import PdfReader

from core.platform.errors import UserFacingError
from core.platform.models import PROVIDER_LABELS, Provider


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int
    extensions: frozenset[str]


LIMITS: dict[Provider, IntakeLimits] = {
    # DUO Next list and 20 MB = 20 × 1024 × 1024 bytes (#DCO01215, #DCO01216).
    Provider.datev: IntakeLimits(
        max_bytes=20 * 1024 * 1024,
        extensions=frozenset({"gif", "jpeg", "jpg", "png", "tif", "tiff", "xml", "pdf"}),
    ),
    # Measured: 5,242,880 bytes pass, one byte more fails (max_file_size_exceeded).
    Provider.lexware: IntakeLimits(
        max_bytes=5_242_880,
        extensions=frozenset({"pdf", "jpg", "jpeg", "png", "xml"}),
    ),
}

MAX_NAME_CHARS = 255  # #DCO01222
MAX_NOTE_CHARS = 255  # #DCO01223
MAX_DOCUMENT_TYPE_CHARS = 30  # #DCO01227
SIZE_WARNING_BYTES = 500 * 1024  # DATEV recommends warning the user above 500 kB

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "xml": "application/xml",
}
_MEDIA_TYPE_LABELS = {
    "application/pdf": "PDF",
    "image/png": "PNG-Bild",
    "image/jpeg": "JPEG-Bild",
    "image/gif": "GIF-Bild",
    "image/tiff": "TIFF-Bild",
    "application/xml": "XML",
}
_DISPLAY_ORDER = ("pdf", "jpg", "jpeg", "png", "gif", "tif", "tiff", "xml")

# DATEV's whitelist: space, & ( ) + - . _, digits, ASCII letters, Latin-1 accented letters.
_NOT_ALLOWED_IN_NAME = re.compile(r"[^ &()+\-._0-9A-Za-zÀ-ÖØ-öø-ÿ]")
_XML_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<")
_XML_FORBIDDEN = (b"<!doctype", b"<!entity")


class IntakeRejected(UserFacingError):
    """The file cannot be taken in. `message` is German and names the file; `code` is for machines."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AcceptedFile:
    clean_name: str
    original_name: str
    size: int
    sha256: str
    media_type: str
    extension: str


def sanitize_filename(name: str) -> str:
    """Return the file name as DATEV stores it; raise IntakeRejected (code "name") if none is left."""
    base = _base_name(name).strip()
    if not base.strip("."):
        raise IntakeRejected(f"Die Datei „{_shown(name)}“ hat keinen gültigen Dateinamen.", code="name")
    clean = _NOT_ALLOWED_IN_NAME.sub("_", unicodedata.normalize("NFC", base))
    if len(clean) <= MAX_NAME_CHARS:
        return clean
    stem, dot, extension = clean.rpartition(".")
    if not dot or len(extension) + 2 > MAX_NAME_CHARS:
        return clean[:MAX_NAME_CHARS]
    return stem[: MAX_NAME_CHARS - len(extension) - 1] + "." + extension


def sniff_media_type(content: bytes) -> str | None:
    """The media type the first bytes show, or None when no known format matches."""
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if _XML_START.match(content[:4096]):
        return "application/xml"
    return None


def validate_file(
    *, name: str, content: bytes, provider: Provider, note: str = "", document_type: str = ""
) -> AcceptedFile:
    """Run every intake check in order; the first failure raises IntakeRejected."""
    shown = _shown(name)
    limits = LIMITS[provider]
    label = PROVIDER_LABELS[provider]
    if not content:
        raise IntakeRejected(f"Die Datei „{shown}“ ist leer (0 Byte).", code="empty")

    clean_name = sanitize_filename(name)
    stem, dot, raw_extension = clean_name.rpartition(".")
    extension = raw_extension.lower()
    if not dot or not extension:
        raise IntakeRejected(f"Die Datei „{shown}“ hat keine Dateiendung (z. B. .pdf).", code="name")
    if not stem.strip(" ._-"):  # ".pdf": DATEV and the Belegliste would show a document without a name
        raise IntakeRejected(f"Die Datei „{shown}“ hat keinen Namen vor der Endung (z. B. Rechnung.pdf).", code="name")
    if extension not in limits.extensions:
        raise IntakeRejected(
            f"Die Datei „{shown}“ hat das Format .{extension}, das {label} nicht annimmt. "
            f"Erlaubt: {_format_list(limits)}.",
            code="extension",
        )

    if len(content) > limits.max_bytes:
        label_compound = label.replace(" ", "-")  # "Lexware-Office-Grenze"
        raise IntakeRejected(
            f"Die Datei „{shown}“ ist größer als {_megabytes(limits.max_bytes)} MB ({label_compound}-Grenze).",
            code="too_large",
        )

    expected = MEDIA_TYPES[extension]
    found = sniff_media_type(content)
    if found != expected:
        found_text = _MEDIA_TYPE_LABELS[found] if found else "unbekanntes Format"
        raise IntakeRejected(
            f"Der Inhalt der Datei „{shown}“ passt nicht zur Endung .{extension} (erkannt: {found_text}).",
            code="content_mismatch",
        )
    if expected == "application/pdf":
        _check_pdf(content, shown)
    elif expected == "application/xml":
        _check_xml(content, shown)

    if len(note) > MAX_NOTE_CHARS:
        raise IntakeRejected(
            f"Die Notiz zur Datei „{shown}“ ist länger als {MAX_NOTE_CHARS} Zeichen ({len(note)}).",
            code="note_too_long",
        )
    if len(document_type) > MAX_DOCUMENT_TYPE_CHARS:
        raise IntakeRejected(
            f"Der Belegtyp zur Datei „{shown}“ ist länger als {MAX_DOCUMENT_TYPE_CHARS} Zeichen.",
            code="type_too_long",
        )

    return AcceptedFile(
        clean_name=clean_name,
        original_name=name,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        media_type=expected,
        extension=extension,
    )


def describe_limits(provider: Provider) -> str:
    """One German line for the upload screen, e.g. "Erlaubt: PDF, JPG, … bis 20 MB je Datei (DATEV)"."""
    limits = LIMITS[provider]
    return (
        f"Erlaubt: {_format_list(limits)} bis {_megabytes(limits.max_bytes)} MB je Datei ({PROVIDER_LABELS[provider]})."
    )


def size_warning(size: int) -> str | None:
    """A German hint for files above 500 kB (DATEV's recommendation), else None."""
    if size <= SIZE_WARNING_BYTES:
        return None
    return (
        f"Die Datei ist {_format_size(size)} groß. DATEV empfiehlt Belege unter 500 kB; "
        "größere Dateien brauchen bei der Übertragung länger."
    )


def _check_pdf(content: bytes, shown: str) -> None:
    unreadable = IntakeRejected(f"Die PDF-Datei „{shown}“ ist beschädigt oder nicht lesbar.", code="pdf_unreadable")
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IntakeRejected(
                f"Die PDF-Datei „{shown}“ ist mit einem Passwort geschützt. "
                "Bitte speichern Sie sie ohne Passwort und laden Sie sie erneut hoch.",
                code="pdf_unreadable",
            )
        page_count = len(reader.pages)
    except IntakeRejected:
        raise
    except Exception as exc:  # pypdf raises many types on broken files
        raise unreadable from exc
    if page_count == 0:
        raise IntakeRejected(f"Die PDF-Datei „{shown}“ enthält keine Seiten.", code="pdf_unreadable")


def _check_xml(content: bytes, shown: str) -> None:
    # Without defusedxml: refuse DTDs outright, which rules out entity expansion attacks.
    lowered = content.lower()
    if any(marker in lowered for marker in _XML_FORBIDDEN):
        raise IntakeRejected(
            f"Die XML-Datei „{shown}“ enthält eine DOCTYPE- oder ENTITY-Angabe und wird "
            "aus Sicherheitsgründen nicht angenommen.",
            code="xml_invalid",
        )
    try:
        ET.fromstring(content)
    except (ET.ParseError, ValueError) as exc:
        raise IntakeRejected(f"Die XML-Datei „{shown}“ ist nicht wohlgeformt.", code="xml_invalid") from exc


def _base_name(name: str) -> str:
    return re.split(r"[/\\]", name)[-1]


def _shown(name: str) -> str:
    """The file name as it may appear in a message: no path, no control characters, not endless."""
    base = "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in _base_name(name))
    return base if len(base) <= 120 else base[:119] + "…"


def _format_list(limits: IntakeLimits) -> str:
    return ", ".join(ext.upper() for ext in _DISPLAY_ORDER if ext in limits.extensions)


def _megabytes(size: int) -> str:
    value = size / (1024 * 1024)
    return str(int(value)) if value.is_integer() else f"{value:.1f}".replace(".", ",")


def _format_size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{round(size / 1024)} kB"
    return f"{size / (1024 * 1024):.1f} MB".replace(".", ",")
