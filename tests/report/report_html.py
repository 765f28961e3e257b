"""Read a rendered report back as a person sees it: title, headings, tables, images, text."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Page:
    title: str = ""
    headings: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)  # table → row → cell text
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (alt, decoded PNG bytes)
    styles: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # <li> texts
    text: str = ""
    tags: set[str] = field(default_factory=set)

    def table(self, first_header: str) -> list[list[str]]:
        """The table whose first header cell is ``first_header``, header row included."""
        for t in self.tables:
            if t and t[0] and t[0][0] == first_header:
                return t
        raise AssertionError(f"no table starting with {first_header!r}; tables start with "
                             f"{[t[0][0] for t in self.tables if t and t[0]]}")


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._open: list[str] = []
        self._buf: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.page.tags.add(tag)
        a = dict(attrs)
        if tag == "table":
            self.page.tables.append([])
        elif tag == "tr":
            self.page.tables[-1].append([])
        elif tag == "img":
            src = a.get("src") or ""
            prefix = "data:image/png;base64,"
            assert src.startswith(prefix), f"image {a.get('alt')!r} is not embedded: {src[:40]}"
            self.page.images.append((a.get("alt") or "", base64.b64decode(src[len(prefix):], validate=True)))
        if tag in ("title", "h1", "h2", "h3", "td", "th", "style", "figcaption", "li"):
            self._open.append(tag)
            self._buf = []

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()
            text = " ".join("".join(self._buf).split())
            if tag == "title":
                self.page.title = text
            elif tag in ("h1", "h2", "h3"):
                self.page.headings.append(text)
            elif tag in ("td", "th"):
                self.page.tables[-1][-1].append(text)
            elif tag == "style":
                self.page.styles.append("".join(self._buf))
            elif tag == "figcaption":
                self.page.captions.append(text)
            elif tag == "li":
                self.page.items.append(text)

    def handle_data(self, data):
        self._buf.append(data)
        if not self._open or self._open[-1] != "style":
            self._text.append(data)


def read_page(html: str) -> Page:
    r = _Reader()
    r.feed(html)
    r.close()
    r.page.text = " ".join("".join(r._text).split())
    return r.page


def is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")
