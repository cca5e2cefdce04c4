"""A paper's Markdown as HTML for the project page, safe to show: raw HTML in it is escaped, not rendered.

markdown-it-py (CommonMark, tables on) with HTML disabled, so a ``<script>`` a model wrote is text.
Relative links and images (the paper's figures) point at the view's own file route; an image from
another host is shown as its alt text, so opening a paper never makes the browser fetch from anywhere.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _local(url: str, base: tuple[str, str]) -> str | None:
    """The view's URL of a relative link inside the run folder, else None.

    ``base`` is (the run's file route, the Markdown file's folder relative to the run folder).
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("/", "#")) or not parts.path:
        return None
    route, folder = base
    joined = posixpath.normpath(posixpath.join(folder, parts.path))
    if joined == ".." or joined.startswith(("../", "/")):
        return None
    return route.rstrip("/") + "/" + quote(joined) + (f"#{parts.fragment}" if parts.fragment else "")


def _rewrite(tokens: list[Token], base: tuple[str, str]) -> None:
    for token in tokens:
        if token.children:
            _rewrite(token.children, base)
        if token.type == "image":
            src = str(token.attrGet("src") or "")
            local = _local(src, base)
            if local is None:  # never fetched: the alt text stands in for it
                alt = "".join(child.content for child in token.children or []) or src
                token.type, token.tag, token.attrs, token.children = "text", "", {}, None
                token.content = f"[image not loaded: {alt}]"
            else:
                token.attrSet("src", local)
        elif token.type == "link_open":
            href = str(token.attrGet("href") or "")
            local = _local(href, base)
            if local is not None:
                token.attrSet("href", local)
            elif urlsplit(href).scheme in ("http", "https", "mailto"):
                token.attrSet("rel", "noopener noreferrer")
            elif not href.startswith("#"):
                token.attrSet("href", "#")  # a relative link out of the run folder: kept as text only


def render_markdown(text: str, files_route: str, folder: str) -> Markup:
    """Markdown to safe HTML; relative links and images resolved from ``folder`` (the file's folder,
    relative to the run folder) to the view's file route ``files_route``; any leaving the run folder dropped."""
    env: dict[str, object] = {}
    tokens = _md.parse(text, env)
    _rewrite(tokens, (files_route, folder))
    return Markup(_md.renderer.render(tokens, _md.options, env))
