"""One page shell for every HTML page, and templates that escape by default.

Every page (scan report, cohort page, preview pages, registration QC) is a Jinja2 template
extending ``base.html.j2``: one stylesheet, one script, and a Content-Security-Policy that
forbids any request the page could make (no fonts, scripts or images from elsewhere), so a
report reads the same offline and leaks nothing. Templates autoescape every value; only
markup built by other templates (:func:`fragment`) is inserted as it is. Images are
``data:`` URIs and charts inline SVG.

Example:
    >>> page = render("preview.html.j2", title="<b>t</b>", meta=[("k", "v")], image="",
    ...               note="n")
    >>> page.startswith("<!DOCTYPE html>"), "&lt;b&gt;t&lt;/b&gt;" in page, "<b>t" in page
    (True, True, False)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text (escaped), and optionally a class, a sort key, a link."""

    text: Any
    cls: str = ""
    sort: str | None = None     # ``data-v``: what the table sorts by, when not the text
    link: str | None = None     # a relative link (URL-encoded in the page)
    strong: bool = False


@dataclass(frozen=True)
class Tile:
    """An image with orientation letters on its edges and an optional caption."""

    uri: str
    labels: dict[str, str]
    alt: str
    caption: str = ""
    link: str | None = None


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    sortable: bool = False


def cells(*values: Any) -> list[Cell]:
    """A row of plain cells (values already formatted as text where it matters)."""
    return [v if isinstance(v, Cell) else Cell(v) for v in values]


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["urlquote"] = lambda link: quote(str(link))
    env.globals.update(CSP=Markup(CSP), CSS=Markup((TEMPLATES / "style.css").read_text()),
                       SCRIPT=Markup((TEMPLATES / "script.js").read_text()))
    return env


def render(template: str, **context: Any) -> str:
    """A page (or fragment) from its template; every value is escaped unless it is markup
    from :func:`fragment`."""
    return environment().get_template(template).render(**context)


def fragment(template: str, **context: Any) -> Markup:
    """Markup from a fragment template (an SVG chart, a page section), safe to insert."""
    return Markup(render(template, **context))
