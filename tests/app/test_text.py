"""ui.text: outside text renders as itself, never as Markdown, and table cells are no formulas."""

from streamlit.testing.v1 import AppTest

from ui.text import cell, frame, plain

HOSTILE = "![p](http://host/pixel) **fett** :red[rot] $x^2$ [link](http://evil) <b>b</b> # Titel"


def _render(value: str) -> AppTest:
    def script(value: str) -> None:
        import streamlit as st

        from ui.text import plain

        st.markdown(plain(value))
        st.title(plain(value))
        st.caption(plain(value))
        st.info(plain(value))

    return AppTest.from_function(script, args=(value,)).run()


def test_markdown_stays_text_in_every_element():
    at = _render(HOSTILE)
    assert not at.exception
    # The markdown source Streamlit receives: every mark that could start markup escaped, so no image,
    # link, directive, formula, HTML or heading is produced in the browser (CommonMark shows a
    # backslash-escaped mark as itself).
    for element in (at.markdown[0], at.title[0], at.caption[0], at.info[0]):
        assert "!\\[p\\](http://host/pixel)" in element.value
        assert "\\*\\*fett\\*\\*" in element.value
        assert "\\:red\\[rot\\]" in element.value and "\\$x^2\\$" in element.value
        assert "\\<b\\>b\\</b\\>" in element.value and "\\# Titel" in element.value
        assert "](" not in element.value.replace("\\](", "")  # every "](" is an escaped, inert bracket


def test_plain_keeps_ordinary_names_readable_and_flattens_lines():
    assert plain("Demo Bau AG") == "Demo Bau AG"
    assert plain("Müller & Söhne GmbH (Köln): 3. Quartal, 20-30 %") == "Müller & Söhne GmbH (Köln): 3. Quartal, 20-30 %"
    assert plain("Zeile 1\n# Zeile 2") == "Zeile 1 \\# Zeile 2"
    assert plain("- Liste") == "\\- Liste" and plain("1. Liste") == "1\\. Liste"
    assert plain(":material/key: Icon") == "\\:material/key: Icon"
    assert plain(None) == "–" and plain("  ") == "–"


def test_cells_starting_like_a_formula_are_neutralised():
    for value in ("=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert cell(value) == "'" + value
    assert cell("Demo Bau AG") == "Demo Bau AG"
    assert cell(-5) == -5 and cell(None) is None


def test_frame_neutralises_every_text_column_and_leaves_the_rest():
    table = frame([{"Name": "=1+1", "Text": "Demo", "Zahl": -3, "Leer": None},
                   {"Name": "@x", "Text": "-y", "Zahl": 4, "Leer": "+z"}])
    assert table["Name"].tolist() == ["'=1+1", "'@x"] and table["Text"].tolist() == ["Demo", "'-y"]
    assert table["Zahl"].tolist() == [-3, 4] and table["Leer"].tolist()[1] == "'+z"
