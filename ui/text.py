r"""Text from outside (company names, DATEV and Lexware user names, provider error texts) shown as text.

Streamlit renders Markdown, colour directives (`:red[…]`), icons (`:material/…:`) and LaTeX (`$…$`) in
`st.markdown`, `st.write`, titles, captions, button labels and alert boxes. `html.escape` does not stop
any of that: a company named `![p](http://host/pixel)` would make every viewer's browser fetch the URL.
`plain()` backslash-escapes each character that can start markup (CommonMark shows a backslash-escaped
punctuation character as itself), so such text can never become markup, while ordinary sentence marks
stay as they are (readable in tests and logs):
- `\ ` * _ ~ | # $ < > [ ]` everywhere: escapes, code, emphasis, strike-through, tables, headings,
  LaTeX, autolinks and raw HTML, links and images (`!`/`(` only act after `[`/`]`, so they stay);
- `:` before a letter or digit: colour directives and icon/emoji short codes (`:red[`, `:material/`);
- a leading `-`, `+`, `=` or `1.`: lists and setext headings (line breaks are folded into spaces, so
  only the start of the text is a line start).
Use it for every value that did not come from this code base; our own German texts stay Markdown.

Tables: `st.dataframe` offers a CSV download of the raw cell values, so a cell starting with `=`, `+`,
`-`, `@`, tab or carriage return would be a formula in a spreadsheet. `cell()` neutralises such text the
way the product's own CSV export does (a leading apostrophe); numbers and dates are left alone.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_MARKUP = re.compile(r"([\\`*_~|#$<>\[\]])")
_SHORT_CODE = re.compile(r":(?=[A-Za-z0-9])")
_LINE_START = re.compile(r"^([-+=]|\d+[.)])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: object) -> str:
    """`value` as literal text for any Streamlit element that renders Markdown ("–" for None/empty)."""
    text = "" if value is None else " ".join(str(value).split())  # no line breaks: no headings, lists, tables
    if not text:
        return "–"
    text = _SHORT_CODE.sub(r"\\:", _MARKUP.sub(r"\\\1", text))
    return _LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], text)


def frame(data: Any) -> pd.DataFrame:
    """A table for `st.dataframe` whose text cells are all `cell()`-safe (rows as dicts, or a DataFrame)."""
    table = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    for column in table.columns:  # text columns: pandas 3 types them "str", older ones object
        if pd.api.types.is_string_dtype(table[column]) or pd.api.types.is_object_dtype(table[column]):
            table[column] = table[column].map(cell)
    return table


def cell(value: Any) -> Any:
    """A table cell that is safe in a spreadsheet after "Download as CSV"."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
