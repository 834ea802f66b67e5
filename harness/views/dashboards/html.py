"""Self-contained HTML: one page template with plotly.js inlined once, figures embedded with fixed div ids
(so the same database renders byte-identical pages), and escaped tables."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import plotly.io as pio

#: plotly config for every figure: no logo link, no "edit in Chart Studio" (no network), responsive
PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

CSS = """
:root { --fg:#1f2933; --muted:#52606d; --line:#d9e2ec; --bg:#f5f7fa; --accent:#2563eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg);
       margin: 0; background: #fff; }
header { background: #102a43; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header .sub { color: #bcccdc; font-size: 13px; margin-top: 2px; }
nav { position: sticky; top: 0; z-index: 10; background: var(--bg); border-bottom: 1px solid var(--line);
      padding: 8px 28px; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 500; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.note { color: var(--muted); margin: 4px 0 10px; max-width: 1100px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
.chip { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600;
        color: #fff; }
.c-passed, .c-confirmed, .c-ok { background: #2f855a; }
.c-unchecked { background: #4a5568; }
.c-skipped, .c-untested { background: #8a99ab; }
.c-untestable { background: #cbd2d9; color: #1f2933; }
.c-failed, .c-refuted { background: #c53030; }
.c-rejected { background: #702459; }
.c-consistent { background: #2f855a; }
.c-inconsistent { background: #dd6b20; }
.legend span { margin-right: 10px; }
.figure { border: 1px solid var(--line); border-radius: 4px; margin: 8px 0 18px; padding: 4px; }
code { background: var(--bg); padding: 0 4px; border-radius: 3px; }
.quote { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; color: #334e68; }
.empty { padding: 14px; background: var(--bg); border: 1px dashed var(--line); color: var(--muted); }
"""


class Raw(str):
    """Already-safe HTML (not escaped again)."""


def esc(x: Any) -> str:
    if isinstance(x, Raw):
        return str(x)
    return html.escape("" if x is None else str(x), quote=True)


def chip(text: str, cls: str | None = None) -> Raw:
    return Raw(f'<span class="chip c-{esc(cls or text)}">{esc(text)}</span>')


def link(href: str, text: str) -> Raw:
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[str] = (), cls: str = ""
) -> Raw:
    num = {i for i, c in enumerate(columns) if c in set(numeric)}
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="num">{esc(v)}</td>' if i in num else f"<td>{esc(v)}</td>" for i, v in enumerate(r)
        )
        body.append(f"<tr>{tds}</tr>")
    if not body:
        return Raw('<p class="empty">none</p>')
    c = f' class="{esc(cls)}"' if cls else ""
    return Raw(f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def kv_table(rows: Iterable[tuple[str, Any]]) -> Raw:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return Raw(f'<table class="kv"><tbody>{body}</tbody></table>')


def figure(fig: Any, div_id: str) -> Raw:
    """A figure's div and its Plotly.newPlot call; the page carries plotly.js once."""
    # plotly encodes through orjson when it is importable and through json otherwise, with other number
    # formats and escapes: one engine named here makes a page the same bytes wherever it is written
    engine = pio.json.config.default_engine
    pio.json.config.default_engine = "json"
    try:
        inner = pio.to_html(
            fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOTLY_CONFIG, validate=True
        )
    finally:
        pio.json.config.default_engine = engine
    return Raw(f'<div class="figure">{inner}</div>')


def empty(msg: str) -> Raw:
    return Raw(f'<p class="empty">{esc(msg)}</p>')


PLOTLY_FILE = "plotly.min.js"


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def page(
    title: str, subtitle: str, body: str, nav: Sequence[tuple[str, str]] = (), plotly: bool = True
) -> str:
    navhtml = "".join(f'<a href="{esc(h)}">{esc(t)}</a>' for t, h in nav)
    # one copy of plotly.js beside the pages (PLOTLY_FILE, written by the renderer), not one per page: ten
    # pages with it inlined came to ~50 MB
    js = f'<script type="text/javascript" src="{PLOTLY_FILE}"></script>' if plotly else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{CSS}</style>{js}</head><body>"
        f'<header><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div></header>'
        + (f"<nav>{navhtml}</nav>" if navhtml else "")
        + f"<main>{body}</main></body></html>\n"
    )


def section(anchor: str, title: str, *parts: str) -> Raw:
    return Raw(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{"".join(parts)}</section>')


def note(text: str) -> Raw:
    return Raw(f'<p class="note">{esc(text)}</p>')


def h3(text: str) -> Raw:
    return Raw(f"<h3>{esc(text)}</h3>")
