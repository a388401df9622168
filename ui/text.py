"""Outside text stays text: company names, DATEV user names and provider error texts come from users
and providers, so they are never rendered as Markdown or Streamlit directives (issue #9).

`plain` escapes a value for any Streamlit call that renders Markdown (st.markdown, st.write, st.info,
labels, captions). `cell` makes a value safe for a st.dataframe cell: the table's CSV download exports
raw values, and a spreadsheet runs a cell that starts with = + - @ (or a tab / carriage return) as a
formula (OWASP "CSV injection").
"""

from __future__ import annotations

import re

# Markdown and Streamlit's own directives (":material/...:", ":red[...]", "$...$" for LaTeX, "~~").
_MARKDOWN = re.compile(r"([\\`*_\[\]()!#$:~|<>{}+\-.])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: object) -> str:
    """`value` as literal text inside Markdown: every Markdown or directive character backslash-escaped,
    line breaks kept as spaces (a newline could start a heading or a list)."""
    text = "" if value is None else str(value)
    text = " ".join(text.splitlines())
    return _MARKDOWN.sub(r"\\\1", text)


def cell(value: object) -> str:
    """`value` for a table cell that may be exported as CSV: a leading formula character gets a `'`."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
