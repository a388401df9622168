"""Intake checks for Belege: every rejection, the size limits at the byte, DATEV's file name rules."""

from __future__ import annotations

import hashlib
import io
import unicodedata
from typing import Any

import pytest
from pypdf import PdfWriter

from core.documents.validation import (
    LIMITS,
    AcceptedFile,
    IntakeRejected,
    describe_limits,
    sanitize_filename,
    size_warning,
    sniff_media_type,
    validate_file,
)
from core.platform.errors import UserFacingError
from core.platform.models import Provider

PNG_HEADER = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR"
JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
XML = '<?xml version="1.0" encoding="UTF-8"?>\n<Rechnung><Betrag>12,50</Betrag><Text>Büro</Text></Rechnung>'.encode()


def make_pdf(*, pages: int = 1, user_password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def rejection(**kwargs: Any) -> IntakeRejected:
    kwargs.setdefault("provider", Provider.datev)
    with pytest.raises(IntakeRejected) as info:
        validate_file(**kwargs)
    return info.value


# --- accepted files -------------------------------------------------------------------------


def test_real_pdf_is_accepted_with_hash_and_media_type() -> None:
    pdf = make_pdf()
    accepted = validate_file(
        name="Rechnung März.pdf", content=pdf, provider=Provider.datev, note="Q1", document_type="Rechnungseingang"
    )
    assert accepted == AcceptedFile(
        clean_name="Rechnung März.pdf",
        original_name="Rechnung März.pdf",
        size=len(pdf),
        sha256=hashlib.sha256(pdf).hexdigest(),
        media_type="application/pdf",
        extension="pdf",
    )


def test_pdf_with_owner_password_only_is_accepted() -> None:
    accepted = validate_file(name="x.pdf", content=make_pdf(user_password=""), provider=Provider.lexware)
    assert accepted.media_type == "application/pdf"


def test_well_formed_xml_is_accepted_for_both_providers() -> None:
    for provider in Provider:
        accepted = validate_file(name="xrechnung.XML", content=XML, provider=provider)
        assert (accepted.media_type, accepted.extension, accepted.clean_name) == (
            "application/xml",
            "xml",
            "xrechnung.XML",
        )


@pytest.mark.parametrize("name", ["foto.jpg", "foto.jpeg", "FOTO.JPEG", "foto.JpG"])
def test_jpg_and_jpeg_are_both_allowed_in_any_case(name: str) -> None:
    accepted = validate_file(name=name, content=JPEG_HEADER + b"\x00" * 100, provider=Provider.lexware)
    assert accepted.media_type == "image/jpeg"
    assert accepted.extension == name.rsplit(".", 1)[1].lower()


@pytest.mark.parametrize(
    ("name", "content", "media_type"),
    [
        ("scan.tif", b"II*\x00" + b"\x00" * 20, "image/tiff"),
        ("scan.tiff", b"MM\x00*" + b"\x00" * 20, "image/tiff"),
        ("logo.gif", b"GIF89a" + b"\x00" * 20, "image/gif"),
        ("alt.gif", b"GIF87a" + b"\x00" * 20, "image/gif"),
        ("bild.png", PNG_HEADER, "image/png"),
    ],
)
def test_datev_image_formats_are_accepted(name: str, content: bytes, media_type: str) -> None:
    assert validate_file(name=name, content=content, provider=Provider.datev).media_type == media_type


# --- boundary sizes ---------------------------------------------------------------------------


def test_lexware_accepts_exactly_5_mib_and_rejects_one_byte_more() -> None:
    limit = LIMITS[Provider.lexware].max_bytes
    assert limit == 5_242_880
    at_limit = PNG_HEADER + b"\x00" * (limit - len(PNG_HEADER))
    assert validate_file(name="bild.png", content=at_limit, provider=Provider.lexware).size == limit

    error = rejection(name="bild.png", content=at_limit + b"\x00", provider=Provider.lexware)
    assert error.code == "too_large"
    assert "bild.png" in error.message
    assert "größer als 5 MB (Lexware-Office-Grenze)" in error.message


def test_padded_pdf_at_lexware_limit_is_accepted() -> None:
    pdf = make_pdf()
    padded = pdf + b"\n" * (5_242_880 - len(pdf))
    assert validate_file(name="gross.pdf", content=padded, provider=Provider.lexware).size == 5_242_880


def test_datev_limit_is_20_mib() -> None:
    limit = LIMITS[Provider.datev].max_bytes
    assert limit == 20 * 1024 * 1024
    at_limit = PNG_HEADER + b"\x00" * (limit - len(PNG_HEADER))
    assert validate_file(name="scan.png", content=at_limit, provider=Provider.datev).size == limit
    error = rejection(name="scan.png", content=at_limit + b"\x00")
    assert error.code == "too_large"
    assert "größer als 20 MB (DATEV-Grenze)" in error.message


# --- every rejection code ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"name": "leer.pdf", "content": b""}, "empty"),
        ({"name": "ohne-endung", "content": make_pdf()}, "name"),
        ({"name": "punkt-am-ende.", "content": make_pdf()}, "name"),
        ({"name": "bild.gif", "content": b"GIF89a", "provider": Provider.lexware}, "extension"),
        ({"name": "scan.tiff", "content": b"II*\x00", "provider": Provider.lexware}, "extension"),
        ({"name": "archiv.zip", "content": b"PK\x03\x04"}, "extension"),
        ({"name": "notiz.txt", "content": b"hallo"}, "extension"),
        ({"name": "getarnt.pdf", "content": PNG_HEADER}, "content_mismatch"),
        ({"name": "foto.png", "content": JPEG_HEADER}, "content_mismatch"),
        ({"name": "daten.xml", "content": b"kein xml"}, "content_mismatch"),
        ({"name": "kaputt.pdf", "content": b"%PDF-1.7\n"}, "pdf_unreadable"),
        ({"name": "kaputt.pdf", "content": b"%PDF-garbage" * 20}, "pdf_unreadable"),
        ({"name": "halb.pdf", "content": make_pdf()[:200]}, "pdf_unreadable"),
        ({"name": "nullseiten.pdf", "content": make_pdf(pages=0)}, "pdf_unreadable"),
        ({"name": "kaputt.xml", "content": b"<Rechnung><Betrag>"}, "xml_invalid"),
        ({"name": "notiz.pdf", "content": make_pdf(), "note": "x" * 256}, "note_too_long"),
        ({"name": "typ.pdf", "content": make_pdf(), "document_type": "x" * 31}, "type_too_long"),
    ],
)
def test_each_rejection_has_code_and_german_message_naming_the_file(kwargs: dict[str, object], code: str) -> None:
    error = rejection(**kwargs)
    assert error.code == code
    assert str(kwargs["name"]) in error.message
    assert error.message == str(error)
    assert isinstance(error, UserFacingError)
    assert any(word in error.message for word in ("Datei", "Notiz", "Belegtyp"))


def test_name_rejection_for_empty_and_dots_only_names() -> None:
    for name in ["", "   ", "..", "ordner/", "C:\\Belege\\..."]:
        assert rejection(name=name, content=make_pdf()).code == "name"


def test_encrypted_pdf_is_rejected_with_password_hint() -> None:
    error = rejection(name="geschützt.pdf", content=make_pdf(user_password="geheim"))
    assert error.code == "pdf_unreadable"
    assert "Passwort" in error.message
    assert "geschützt.pdf" in error.message
    assert "geheim" not in error.message


def test_xml_with_doctype_or_entity_is_rejected_before_parsing() -> None:
    billion_laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
    )
    error = rejection(name="bombe.xml", content=billion_laughs)
    assert error.code == "xml_invalid"
    assert "DOCTYPE" in error.message and "bombe.xml" in error.message
    assert rejection(name="e.xml", content=b"<a><!ENTITY x 'y'></a>").code == "xml_invalid"
    assert rejection(name="d.xml", content=b"\xef\xbb\xbf <!doctype a><a/>").code == "xml_invalid"


def test_note_and_document_type_limits_are_inclusive() -> None:
    accepted = validate_file(
        name="x.pdf", content=make_pdf(), provider=Provider.datev, note="n" * 255, document_type="t" * 30
    )
    assert accepted.clean_name == "x.pdf"


def test_checks_run_in_documented_order() -> None:
    # An empty file with a bad name and a bad extension: "empty" wins.
    assert rejection(name="", content=b"").code == "empty"
    # Wrong extension beats size; size beats content.
    big_garbage = b"x" * (LIMITS[Provider.lexware].max_bytes + 1)
    assert rejection(name="a.gif", content=big_garbage, provider=Provider.lexware).code == "extension"
    assert rejection(name="a.pdf", content=big_garbage, provider=Provider.lexware).code == "too_large"
    # Content problems come before note length.
    assert rejection(name="a.pdf", content=PNG_HEADER, note="x" * 300).code == "content_mismatch"


def test_message_shows_file_name_without_path_and_control_characters() -> None:
    error = rejection(name="C:\\Users\\anna\\geheim\\leer\n.pdf", content=b"")
    assert "leer?.pdf" in error.message
    assert "anna" not in error.message and "\n" not in error.message


# --- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Rechnung März Ü.pdf", "Rechnung März Ü.pdf"),
        ("a/b\\c<d>.pdf", "c_d_.pdf"),
        ("Beleg 😀.pdf", "Beleg _.pdf"),
        ("Straße & Söhne (2026)+Kopie-1_final.PDF", "Straße & Söhne (2026)+Kopie-1_final.PDF"),
        ("Rechnung#12?.pdf", "Rechnung_12_.pdf"),
        ("Łódź €.pdf", "_ód_ _.pdf"),
        ("  Beleg.pdf  ", "Beleg.pdf"),
        ("/tmp/upload/x.pdf", "x.pdf"),
    ],
)
def test_sanitize_filename_follows_datev_whitelist(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_sanitize_filename_composes_decomposed_umlauts() -> None:
    decomposed = unicodedata.normalize("NFD", "März.pdf")
    assert decomposed != "März.pdf"
    assert sanitize_filename(decomposed) == "März.pdf"


def test_sanitize_filename_shortens_long_names_keeping_the_extension() -> None:
    clean = sanitize_filename("a" * 300 + ".pdf")
    assert len(clean) == 255
    assert clean.endswith("a.pdf")
    assert sanitize_filename("b" * 251 + ".pdf") == "b" * 251 + ".pdf"
    assert sanitize_filename("c" * 300) == "c" * 255


def test_long_name_is_shortened_in_accepted_file() -> None:
    accepted = validate_file(name="ä" * 400 + ".xml", content=XML, provider=Provider.lexware)
    assert len(accepted.clean_name) == 255 and accepted.clean_name.endswith(".xml")
    assert accepted.original_name == "ä" * 400 + ".xml"


# --- sniffing, limits text, size warning ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (b"%PDF-1.4", "application/pdf"),
        (PNG_HEADER, "image/png"),
        (b"\xff\xd8\xff\xdb", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
        (b"<?xml version='1.0'?><a/>", "application/xml"),
        (b"\xef\xbb\xbf\n  <a/>", "application/xml"),
        (b"<Invoice/>", "application/xml"),
        (b"PK\x03\x04", None),
        (b"", None),
        (b"hello <a/>", None),
    ],
)
def test_sniff_media_type(content: bytes, media_type: str | None) -> None:
    assert sniff_media_type(content) == media_type


def test_describe_limits_is_german_and_names_formats_and_size() -> None:
    assert (
        describe_limits(Provider.datev)
        == "Erlaubt: PDF, JPG, JPEG, PNG, GIF, TIF, TIFF, XML bis 20 MB je Datei (DATEV)."
    )
    assert describe_limits(Provider.lexware) == "Erlaubt: PDF, JPG, JPEG, PNG, XML bis 5 MB je Datei (Lexware Office)."


def test_size_warning_above_500_kb() -> None:
    assert size_warning(500 * 1024) is None
    assert size_warning(0) is None
    warning = size_warning(500 * 1024 + 1)
    assert warning is not None and "500 kB" in warning and "DATEV" in warning
    assert "2,9 MB" in (size_warning(3_000_000) or "")
