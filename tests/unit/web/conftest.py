"""A small DOM for asserting on pages as a browser parses them (the standard library's HTML
parser): which elements there are, their attributes and their text, so a test checks what a
person sees rather than substrings of the markup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx
from aiohttp import web

VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "wbr", "source"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Every descendant with this tag (any, if None) and these attribute values
        (``class_`` for ``class``)."""
        want = {k.rstrip("_"): v for k, v in attrs.items()}
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and all(
                    _has(child.attrs.get(k), v, k) for k, v in want.items()
                ):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found

    def by_id(self, element_id: str) -> Node:
        found = self.all(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def rows(self) -> list[list[str]]:
        """A table's rows after its header, as the text of each cell."""
        return [[td.text for td in tr.all("td")] for tr in self.all("tr") if tr.all("td")]


def _has(actual: str | None, wanted: str, key: str) -> bool:
    if actual is None:
        return False
    return wanted in actual.split() if key == "class" else actual == wanted


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(page: str) -> Node:
    parser = _Parser()
    parser.feed(page)
    parser.close()
    return parser.root


HOSTILE = "</title><script>alert(1)</script>\"' ]]> & <img src=x onerror=alert(2)>"
"""A name or reason that would run script, leave an attribute or end a CDATA section if any
page forgot to escape it."""


async def serve(app: web.Application) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on a free loopback port, and a client for it; both stopped when done."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False) as client:
            yield client
    finally:
        await runner.cleanup()
