"""What an AppTest run rendered, as text: for assertions about pages."""

import html
import re
from collections.abc import Iterator

from google.protobuf import text_format
from streamlit.testing.v1 import AppTest


def page_text(at: AppTest) -> str:
    """Everything the page rendered (every element and block, all their fields), as one string."""

    def walk(node) -> Iterator[str]:
        proto = getattr(node, "proto", None)
        if proto is not None:
            yield text_format.MessageToString(proto, as_utf8=True)
        for child in (getattr(node, "children", None) or {}).values():
            yield from walk(child)

    return "\n".join(walk(at._tree))


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown(markdown: str) -> str:
    """Markdown source as the browser shows it: backslash-escaped punctuation (ui.text.plain) as itself."""
    return _ESCAPED.sub(r"\1", markdown)


def texts(at: AppTest) -> str:
    return "\n".join(shown(str(e.value)) for e in [*at.title, *at.subheader, *at.markdown, *at.info, *at.success,
                                                   *at.error, *at.warning, *at.caption])


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def href_of(link_markdown: str) -> str:
    """The target of the first `href="…"` in a rendered link, unescaped."""
    match = re.search(r'href="([^"]+)"', link_markdown)
    assert match, f"no link in {link_markdown!r}"
    return html.unescape(match.group(1))
