"""The DiPro page's shell and small HTML pieces: every value is escaped here, on the way out.

Pages are plain server-rendered HTML with inline CSS and inline SVG: no script, no font or
file from elsewhere, so they work inside the Airflow UI's sandboxed frame and offline. Links
are built from the mount point the request came through (``root_path``), so the page works
under any Airflow base path. Links to Airflow's own pages open in the top window; Airflow's
frame (sandboxed without ``allow-top-navigation``) blocks them, so they work where the page
is opened on its own.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

#: Runs of these states are over; a "running" run is not.
STATUS_COLOURS = {
    "success": "#2f7d32",
    "partial": "#b26a00",
    "failed": "#c62828",
    "stale": "#6d4c41",
    "empty": "#616161",
    "running": "#1565c0",
    "ok": "#2f7d32",  # a monitored night without a breach
    "breach": "#c62828",
}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1f2328;
background:#fafafa;font-size:14px}
header{background:#1f3b57;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;opacity:.85}header a.here{opacity:1;font-weight:600;
border-bottom:2px solid #fff}header .title{font-weight:700;font-size:16px}
main{padding:16px 24px;max-width:1400px}
h1{font-size:20px;margin:8px 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid
#ddd;padding-bottom:4px}
table{border-collapse:collapse;background:#fff;margin:4px 0 8px}
th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fbfcfd}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;color:#fff;font-size:12px}
.muted{color:#6a737d}.breach{color:#b00;font-weight:bold}.up{color:#c62828}.down{color:#2f7d32}
.warn{background:#fff4e5;border:1px solid #f0b35a;padding:8px 12px;margin:8px 0}
.ok{background:#edf7ee;border:1px solid #8bc48f;padding:8px 12px;margin:8px 0}
.placeholder{border:2px dashed #b0bec5;padding:12px;color:#546e7a;background:#fff}
figure{display:inline-block;margin:4px 12px 4px 0;vertical-align:top}
figcaption{font-size:12px;color:#444;max-width:420px}
pre{background:#f6f8fa;padding:8px;white-space:pre-wrap;border:1px solid #e0e0e0}
.pager{margin:8px 0}.pager a,.pager span{margin-right:12px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:8px 0}
dl.facts dt{color:#6a737d}dl.facts dd{margin:0}
"""


def e(value: object) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def segment(value: str) -> str:
    """``value`` as one escaped URL path segment."""
    return e(quote(value, safe=""))


def query(**params: object) -> str:
    """An escaped query string (``?a=1&b=2``) of the parameters that are not None."""
    kept = {k: str(v) for k, v in params.items() if v is not None}
    return e("?" + urlencode(kept)) if kept else ""


def when(moment: datetime | None) -> str:
    """A UTC time to the minute (seconds when it has them), or an em dash."""
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    shape = "%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M"
    return e(moment.strftime(shape) + " UTC")


def age(moment: datetime, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, in hours or days."""
    hours = ((now or datetime.now(UTC)) - moment).total_seconds() / 3600
    if hours < 0:
        return "in the future"
    if hours < 1:
        return f"{hours * 60:.0f} min ago"
    if hours < 48:
        return f"{hours:.0f} h ago"
    return f"{hours / 24:.0f} days ago"


def badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#455a64")
    return f'<span class="badge" style="background:{colour}">{e(status)}</span>'


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def change(now: float | None, then: float | None, *, points: bool = False) -> str:
    """``now - then`` as a signed change (percentage points when ``points``), coloured."""
    if now is None or then is None:
        return '<span class="muted">no baseline</span>'
    delta = (now - then) * (100 if points else 1)
    if abs(delta) < 1e-9:
        return '<span class="muted">±0</span>'
    unit = " pp" if points else ""
    return f"{delta:+.0f}{unit}"


def facts(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escape them first)."""
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{rows}</dl>'


def table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table; ``head`` is text, cells are HTML already; ``numeric`` columns align right."""
    numeric = numeric or set()

    def cls(i: int) -> str:
        return ' class="n"' if i in numeric else ""

    top = "".join(f"<th{cls(i)}>{e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{top}</tr>{body}</table>"


def page(title: str, body: str, base: str, here: str = "") -> str:
    """The whole HTML document: a header with the DiPro page's sections, then ``body``."""
    links = [("nights", "Nights", f"{base}/"), ("monitoring", "Monitoring", f"{base}/monitoring")]
    nav = "".join(
        f'<a href="{e(href)}"{" class=here" if key == here else ""}>{e(label)}</a>'
        for key, label, href in links
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)} · DiPro</title><style>{CSS}</style></head><body>"
        f'<header><span class="title">DiPro results</span>{nav}</header>'
        f"<main>{body}</main></body></html>"
    )
