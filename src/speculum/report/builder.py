"""One report builder: a list of sections rendered into one self-contained HTML file.

A section is a title plus an HTML body; figures are embedded as base64 PNG, so the file
can be mailed or archived alone. Adding a section for a new method is one call::

    report = Report("My run")
    report.add("Outliers", figure_to_html(fig, "caption"))
    report.write("report.html")
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from speculum import __version__

__all__ = ["Report", "figure_to_html", "table_to_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f5f5f5}.meta{color:#666;font-size:.9em}
"""


def figure_to_html(fig, caption: str = "", dpi: int = 90) -> str:
    """Embed a matplotlib figure as a base64 PNG ``<figure>`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    alt = html.escape(caption or "figure")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</figure>'


def table_to_html(rows: list[dict], floatfmt: str = "{:.4g}") -> str:
    """A small HTML table from a list of dicts with the same keys."""
    if not rows:
        return "<p>(empty)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)

    def cell(v) -> str:
        return html.escape(floatfmt.format(v) if isinstance(v, float) else str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Report:
    """An HTML report made of sections.

    Example:
        >>> r = Report("demo")
        >>> r.add("Numbers", "<p>42</p>")
        >>> "<h2 id=\\"numbers\\">Numbers</h2>" in r.render()
        True
    """

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, title: str, body_html: str) -> None:
        """Append a section (``body_html`` is trusted HTML made by speculum)."""
        self.sections.append((title, body_html))

    def render(self) -> str:
        def anchor(t: str) -> str:
            return "".join(c if c.isalnum() else "-" for c in t.lower()).strip("-")

        nav = " ".join(f'<a href="#{anchor(t)}">{html.escape(t)}</a>' for t, _ in self.sections)
        body = "\n".join(
            f'<section><h2 id="{anchor(t)}">{html.escape(t)}</h2>\n{b}</section>' for t, b in self.sections
        )
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f'<h1>{html.escape(self.title)}</h1><p class="meta">{html.escape(self.subtitle)} '
            f"&middot; speculum {__version__} &middot; {stamp}</p><nav>{nav}</nav>\n{body}\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        os.replace(tmp, path)
        return path
