"""Text from outside (company names, DATEV and Lexware user names, provider error texts) shown as text.

Streamlit renders Markdown, colour directives (`:red[…]`), icons (`:material/…:`) and LaTeX (`$…$`) in
`st.markdown`, `st.write`, titles, captions, button labels and alert boxes. `html.escape` does not stop
any of that: a company named `![p](http://host/pixel)` would make every viewer's browser fetch the URL.
`plain()` backslash-escapes every ASCII punctuation character (CommonMark allows that for all of them,
and the escaped character is shown as itself), so such text can never become markup. Use it for every
value that did not come from this code base; our own German texts stay Markdown.

Tables: `st.dataframe` offers a CSV download of the raw cell values, so a cell starting with `=`, `+`,
`-`, `@`, tab or carriage return would be a formula in a spreadsheet. `cell()` neutralises such text the
way the product's own CSV export does (a leading apostrophe); numbers and dates are left alone.
"""

from __future__ import annotations

import re
import string
from typing import Any

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: object) -> str:
    """`value` as literal text for any Streamlit element that renders Markdown ("–" for None/empty)."""
    text = "" if value is None else " ".join(str(value).split())  # no line breaks: no headings, lists, tables
    if not text:
        return "–"
    return _PUNCTUATION.sub(r"\\\1", text)


def cell(value: Any) -> Any:
    """A table cell that is safe in a spreadsheet after "Download as CSV"."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
