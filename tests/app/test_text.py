"""ui.text: outside text is never Markdown, and table cells are never spreadsheet formulas."""

from __future__ import annotations

import pytest

from ui.text import cell, plain


@pytest.mark.parametrize("raw", ["**fett**", "[Link](https://evil.example)", ":red[rot]", ":material/key:",
                                 "$x^2$", "# Titel", "`code`", "a|b", "<b>x</b>", "~~weg~~", "![bild](x.png)"])
def test_plain_escapes_every_markdown_character(raw: str) -> None:
    escaped, i = plain(raw), 0
    while i < len(escaped):  # every special character comes as a backslash pair
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in "`*_[]()!#$:~|<>", escaped
        i += 1
    assert escaped.replace("\\", "") == raw


def test_plain_keeps_ordinary_text_and_flattens_lines() -> None:
    assert plain("Musterfirma GmbH") == "Musterfirma GmbH"
    assert plain("erste\n# zweite") == "erste \\# zweite"
    assert plain(None) == ""


@pytest.mark.parametrize("raw", ["=SUMME(A1)", "+49 30", "-1", "@cmd", "\tx", "\rx"])
def test_cell_defuses_formulas(raw: str) -> None:
    assert cell(raw) == "'" + raw


def test_cell_leaves_other_values() -> None:
    assert cell("Musterfirma GmbH") == "Musterfirma GmbH"
    assert cell(None) == ""
