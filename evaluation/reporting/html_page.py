"""A report page as typed values, and its rendering as one self-contained HTML document.

The page is built from :class:`Section` values (paragraphs, plots, tables, notes) and rendered
by :func:`render_page`. Every piece of text is escaped here (``html.escape``), so the builders
pass plain strings: a method called ``<script>`` is shown, never run. Plots are embedded as PNG
data URIs and the style sheet is inline: the file opens without a network.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

# PNG files start with these eight bytes.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; color: #1b1b1b;
       margin: 0; background: #ffffff; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 8px; padding-top: 8px; border-top: 2px solid #e3e3e3; }
p.subtitle { color: #555; margin: 0 0 16px; }
nav { background: #f5f7fa; border: 1px solid #e1e5ea; padding: 8px 14px; border-radius: 4px; }
nav a { margin-right: 16px; color: #1f5fa8; text-decoration: none; white-space: nowrap; }
figure.plot { margin: 12px 0 20px; }
figure.plot img { max-width: 100%; height: auto; border: 1px solid #ececec; }
figcaption { color: #444; font-size: 0.92em; margin-top: 4px; }
table { border-collapse: collapse; margin: 10px 0 6px; font-size: 0.88em; }
caption { text-align: left; font-weight: 600; padding-bottom: 6px; white-space: nowrap; }
div.table-wrap { overflow-x: auto; }
th, td { border: 1px solid #d9dde2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.95em; word-break: break-word; }
td.bad { background: #fde2e1; color: #8a1712; font-weight: 600; }
td.good { background: #e3f4e1; }
p.note, ul.notes { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 3px; }
"""


@dataclass(frozen=True)
class Plot:
    """A figure on the page.

    Attributes:
        png: The image, PNG bytes.
        alt: Text for readers who cannot see it.
        caption: What it shows, below it.
    """

    png: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and a style (``"num"``, ``"bad"``, ``"good"``, space-separated)."""

    text: str
    css: str = ""


@dataclass(frozen=True)
class Table:
    """A table: a header row and body rows of cells (plain strings are unstyled cells)."""

    header: tuple[str, ...]
    rows: tuple[tuple[Cell | str, ...], ...]
    caption: str = ""
    note: str = ""


@dataclass(frozen=True)
class Section:
    """A titled part of the page: paragraphs, then plots, then tables, then small-print notes."""

    anchor: str
    title: str
    paragraphs: tuple[str, ...] = ()
    plots: tuple[Plot, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    """The whole page."""

    title: str
    subtitle: str
    sections: tuple[Section, ...]


def render_page(page: Page) -> str:
    """Render the page as one HTML document (UTF-8 text, no external references).

    Args:
        page: What to show.

    Returns:
        The document.
    """
    anchors = _unique_anchors(page.sections)
    contents = " ".join(
        f'<a href="#{anchor}">{_e(section.title)}</a>' for anchor, section in zip(anchors, page.sections)
    )
    body = "\n".join(_section(anchor, section) for anchor, section in zip(anchors, page.sections))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(page.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{_e(page.title)}</h1>\n<p class="subtitle">{_e(page.subtitle)}</p>\n'
        f"<nav>{contents}</nav>\n{body}\n</main>\n</body>\n</html>\n"
    )


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _section(anchor: str, section: Section) -> str:
    parts = [f'<section id="{anchor}" class="report-section">', f"<h2>{_e(section.title)}</h2>"]
    parts.extend(f"<p>{_e(text)}</p>" for text in section.paragraphs)
    parts.extend(_plot(plot) for plot in section.plots)
    parts.extend(_table(table) for table in section.tables)
    if section.notes:
        items = "".join(f"<li>{_e(note)}</li>" for note in section.notes)
        parts.append(f'<ul class="notes">{items}</ul>')
    parts.append("</section>")
    return "\n".join(parts)


def _plot(plot: Plot) -> str:
    caption = f"<figcaption>{_e(plot.caption)}</figcaption>" if plot.caption else ""
    return f'<figure class="plot"><img src="{png_data_uri(plot.png)}" alt="{_e(plot.alt)}">{caption}</figure>'


def _table(table: Table) -> str:
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    header = "".join(f'<th scope="col">{_e(h)}</th>' for h in table.header)
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table-wrap"><table>{caption}<thead><tr>{header}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{note}"
    )


def _cell(cell: Cell | str) -> str:
    if isinstance(cell, str):
        return f"<td>{_e(cell)}</td>"
    css = re.sub(r"[^a-z -]", "", cell.css)
    return f'<td class="{css}">{_e(cell.text)}</td>' if css else f"<td>{_e(cell.text)}</td>"


def _unique_anchors(sections: tuple[Section, ...]) -> list[str]:
    anchors: list[str] = []
    for section in sections:
        base = re.sub(r"[^a-z0-9]+", "-", section.anchor.lower()).strip("-") or "section"
        anchor, n = base, 2
        while anchor in anchors:
            anchor, n = f"{base}-{n}", n + 1
        anchors.append(anchor)
    return anchors


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
