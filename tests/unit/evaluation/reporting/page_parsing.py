"""Reading a report page back in tests: its sections, their images, its embedded PNGs."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ParsedSection:
    """One ``<section>`` of the page: its id, title and the ``src`` of each image in it."""

    anchor: str
    title: str = ""
    images: list[str] = field(default_factory=list)


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[ParsedSection] = []
        self._in_title = False
        self.outside_images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(ParsedSection(anchor=attributes.get("id") or ""))
        elif tag == "h2" and self.sections:
            self._in_title = True
        elif tag == "img":
            target = self.sections[-1].images if self.sections else self.outside_images
            target.append(attributes.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.sections[-1].title += data


def sections(document: str) -> dict[str, ParsedSection]:
    """The page's sections by id, in order."""
    parser = _Sections()
    parser.feed(document)
    return {s.anchor: s for s in parser.sections}


def embedded_pngs(document: str) -> list[bytes]:
    """The decoded bytes of every ``data:image/png;base64`` URI in the page."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)]
