"""Bulk import of companies from a CSV file (admins): a preview with one German verdict per row, and
nothing stored until the admin confirms. Then every valid row is created in one transaction, each with
its audit event (the same validation and pair rule as the form: core.companies).

The file: UTF-8 (with or without BOM) or Windows-1252, separated by semicolons (Excel in German) or commas,
a header row with the columns Name, Berater-Nr., Mandanten-Nr., Schnittstelle, Automatische Übertragung.
Schnittstelle: DATEV, Lexware (Office) or keine; Automatische Übertragung: ja/nein (also 1/0, x, true).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from core import companies
from core.companies import CompanyInput
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import Company, Interface, Role
from core.users import Actor, authorize, authorized

MAX_ROWS = 2_000
MAX_BYTES = 1_000_000
COLUMNS = {"name": "name", "berater-nr.": "consultant_number", "berater-nr": "consultant_number",
           "beraternummer": "consultant_number", "mandanten-nr.": "client_number", "mandanten-nr": "client_number",
           "mandantennummer": "client_number", "schnittstelle": "interface",
           "automatische übertragung": "auto_transfer", "automatisch": "auto_transfer"}
REQUIRED = ("name", "consultant_number", "client_number", "interface", "auto_transfer")
INTERFACES = {"datev": Interface.datev.value, "lexware": Interface.lexware.value,
              "lexware office": Interface.lexware.value, "keine": Interface.none.value, "": Interface.none.value}
YES = {"ja", "j", "1", "x", "true", "wahr"}
NO = {"nein", "n", "0", "", "false", "falsch"}


@dataclass(frozen=True)
class ImportRow:
    line: int  # in the file (the header is line 1)
    data: CompanyInput | None  # None: the row could not even be read
    errors: tuple[str, ...]  # German, one per problem; empty: will be created

    @property
    def ok(self) -> bool:
        return not self.errors


def _decode(content: bytes) -> str:
    if len(content) > MAX_BYTES:
        raise UserFacingError(f"Die Datei ist größer als {MAX_BYTES // 1_000_000} MB.")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UserFacingError("Die Datei ist weder UTF-8 noch Windows-1252.")  # never reached: cp1252 decodes anything


def _rows(text: str) -> tuple[list[str], list[list[str]]]:
    delimiter = ";" if text.split("\n", 1)[0].count(";") >= text.split("\n", 1)[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [r for r in reader]
    if not rows:
        raise UserFacingError("Die Datei ist leer.")
    return rows[0], rows[1:]


def _field_messages(failure: ValidationFailed) -> list[str]:
    labels = {"name": "Name", "consultant_number": "Berater-Nr.", "client_number": "Mandanten-Nr.",
              "interface": "Schnittstelle"}
    return [f"{labels.get(field, field)}: {message}" for field, message in failure.field_errors.items()]


def preview(engine: Engine, settings: Settings, content: bytes, *, actor: Actor) -> list[ImportRow]:
    """Read and check every row; stores nothing. Raises UserFacingError for a file that cannot be read."""
    authorized(engine, actor, Role.admin)
    header, body = _rows(_decode(content))
    mapping = {i: COLUMNS.get(name.strip().casefold()) for i, name in enumerate(header)}
    missing = [c for c in REQUIRED if c not in mapping.values()]
    if missing:
        raise UserFacingError("Es fehlen Spalten: Name, Berater-Nr., Mandanten-Nr., Schnittstelle, Automatische "
                              "Übertragung (Kopfzeile; getrennt durch Semikolon oder Komma).")
    if len(body) > MAX_ROWS:
        raise UserFacingError(f"Höchstens {MAX_ROWS} Zeilen auf einmal.")
    with unit_of_work(engine) as session:
        existing = session.exec(select(Company)).all()
        taken = {(c.consultant_number, c.client_number): c.name for c in existing if c.consultant_number is not None}
        names_taken = {companies.name_key(c.name) for c in existing}
    seen: dict[tuple[int | None, int | None], int] = {}
    seen_names: dict[str, int] = {}
    result = []
    for line, values in enumerate(body, start=2):
        if not any(v.strip() for v in values):
            continue
        raw = {mapping[i]: v.strip() for i, v in enumerate(values) if i in mapping and mapping[i]}
        errors: list[str] = []
        interface = INTERFACES.get(raw.get("interface", "").casefold())
        if interface is None:
            errors.append(f"Schnittstelle „{raw.get('interface', '')}“ unbekannt (DATEV, Lexware oder keine).")
        auto = raw.get("auto_transfer", "").casefold()
        if auto not in YES | NO:
            errors.append(f"Automatische Übertragung „{raw.get('auto_transfer', '')}“: bitte ja oder nein.")
        data = CompanyInput(name=raw.get("name", ""), consultant_number=raw.get("consultant_number", ""),
                            client_number=raw.get("client_number", ""), interface=interface or Interface.none.value,
                            auto_transfer=auto in YES)
        try:
            valid = companies.validate(data, settings)
            pair = (valid.consultant_number, valid.client_number)
            if valid.consultant_number is not None and pair in taken:
                errors.append(f"Berater-Nr. und Mandanten-Nr. gehören schon zu „{taken[pair]}“.")
            elif valid.consultant_number is not None and pair in seen:
                errors.append(f"Berater-Nr. und Mandanten-Nr. stehen schon in Zeile {seen[pair]}.")
            elif valid.consultant_number is not None:
                seen[pair] = line
            name = companies.name_key(valid.name)
            if name in names_taken:
                errors.append(f"Ein Unternehmen „{valid.name}“ gibt es bereits.")
            elif name in seen_names:
                errors.append(f"Der Name „{valid.name}“ steht schon in Zeile {seen_names[name]}.")
            else:
                seen_names[name] = line
        except ValidationFailed as failure:
            errors.extend(_field_messages(failure))
        result.append(ImportRow(line, data, tuple(errors)))
    return result


def import_rows(engine: Engine, rows: list[ImportRow], *, actor: Actor) -> int:
    """Create the valid rows of a preview, all in one transaction (a pair taken meanwhile fails them all,
    with its German message). Returns how many companies were created."""
    valid = [r.data for r in rows if r.ok and r.data is not None]
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.admin)
        for data in valid:
            companies._create_company(session, actor=actor.name, data=data)
    return len(valid)
