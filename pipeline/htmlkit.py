"""Shared pieces of the HTML reports: one stylesheet, one script, the page shell.

Every page is self-contained: images are ``data:`` URIs, charts are inline SVG, and a
Content-Security-Policy forbids any request the page could make (no fonts, scripts or images
from elsewhere), so a report reads the same offline and leaks nothing.

Example:
    >>> page("t", "<p>hi</p>").startswith("<!DOCTYPE html>")
    True
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'")

CSS = """body{font-family:system-ui,sans-serif;margin:20px auto;color:#1d1d1d;max-width:1280px;
padding:0 16px;line-height:1.35}h1{font-size:1.45em;margin-bottom:4px}h2{font-size:1.15em;
margin-top:28px;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.88em;text-align:right}
th{background:#f3f3f3}td.name{text-align:left}table.meta td,table.meta th{text-align:left}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;font-weight:bold}
.abnormal{background:#fde2e1;color:#a00}.normal{background:#e3f5e3;color:#060}
.note{font-size:.85em;color:#555}.views{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;font-size:.8em;text-align:center}.tile{position:relative;display:inline-block;
background:#000;line-height:0}.tile img{display:block}.lab{position:absolute;color:#ffe14d;
font:bold 12px system-ui,sans-serif;line-height:1;text-shadow:0 0 2px #000}
.lab.l{left:3px;top:50%}.lab.r{right:3px;top:50%}.lab.t{top:3px;left:50%}.lab.b{bottom:3px;
left:50%}.grid{display:grid;gap:6px;align-items:start}.viewer{display:inline-block;
margin-right:14px;font-size:.85em}.viewer .tile{overflow:hidden}.viewer .tile img{position:
absolute;left:0;top:0}.viewer input[type=range]{display:block;width:100%}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:' \\2195';
color:#999}.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{width:auto}
footer{margin-top:30px;font-size:.8em;color:#666}"""

SCRIPT = """(function(){
function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();
var n=parseFloat(v);return isNaN(n)?v.toLowerCase():n;}
document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,col){th.addEventListener('click',function(){
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
var asc=th.getAttribute('data-dir')!=='asc';t.querySelectorAll('th').forEach(function(h){
h.removeAttribute('data-dir');});th.setAttribute('data-dir',asc?'asc':'desc');
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll('.viewer').forEach(function(v){
var h=parseFloat(v.getAttribute('data-h')),idx=JSON.parse(v.getAttribute('data-slices'));
var range=v.querySelector('input[type=range]'),pos=v.querySelector('.pos');
var over=v.querySelector('img.over'),box=v.querySelector('input[type=checkbox]');
function show(){var k=parseInt(range.value,10);v.querySelectorAll('.tile img').forEach(
function(im){im.style.transform='translateY('+(-k*h)+'px)';});
pos.textContent='slice '+idx[k];}
range.addEventListener('input',show);if(box)box.addEventListener('change',function(){
over.style.visibility=box.checked?'visible':'hidden';});show();});})();"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def page(title: str, body: str) -> str:
    """A complete self-contained HTML document."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}"
            f"<footer>Research software (vae-anomaly); not a medical device. Generated offline; "
            f"this page makes no network requests.</footer><script>{SCRIPT}</script>"
            f"</body></html>")


def meta_table(rows: Iterable[tuple[str, str]]) -> str:
    """Two-column table of already-escaped HTML values."""
    return "<table class='meta'>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>"
                                            for k, v in rows) + "</table>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], sortable: bool = False) -> str:
    """A table of already-escaped cells; ``sortable`` makes the headers sort on click."""
    cls = " class='sortable'" if sortable else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" if not c.startswith("<td") else c
                                    for c in row) + "</tr>" for row in rows)
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tile(uri: str, edge_labels: dict[str, str], alt: str, caption: str = "") -> str:
    """An image with orientation letters on its four edges and an optional caption."""
    marks = "".join(f"<span class='lab {side[0]}'>{esc(text)}</span>"
                    for side, text in edge_labels.items())
    img = f"<div class='tile'><img alt='{esc(alt)}' src='{uri}'>{marks}</div>"
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>" if caption else img


def href(link: str) -> str:
    """A relative link as an attribute value: URL-encoded (``#``, ``%``), then escaped."""
    return esc(quote(link))


def verdict(abnormal: bool) -> str:
    return ("<span class='verdict abnormal'>ABNORMAL</span>" if abnormal
            else "<span class='verdict normal'>within the healthy range</span>")
