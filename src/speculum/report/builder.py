"""One report builder: a list of sections rendered into one self-contained HTML file.

A section is a title plus an HTML body; figures are embedded as base64 PNG, so the file
can be mailed or archived alone. Adding a section for a new method is one call::

    report = Report("My run")
    report.add("Outliers", figure_to_html(fig, "caption"))
    report.write("report.html")

Methods contribute the sections of their run folders with :func:`register_sections`;
:func:`build_report` (``speculum report RUN``) finds which methods a run folder holds and
puts all their sections into one page.
"""

from __future__ import annotations

import base64
import html
import importlib
import inspect
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from speculum import __version__
from speculum._files import atomic_write_text
from speculum._optional import require

__all__ = ["METHODS", "Report", "build_report", "figure_to_html", "pyplot", "register_sections", "table_to_html"]

METHODS = ("autoencode", "outliers", "diagnostics")
"""Method packages (``speculum.<name>``) whose report sections :func:`build_report` looks for."""

_PROVIDERS: dict[str, tuple[Callable[[Path], bool], Callable[..., list[tuple[str, str]]]]] = {}
_TITLES: dict[str, str] = {}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1em}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f5f5f5}.meta{color:#666;font-size:.9em}
"""


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (an install hint when matplotlib is missing)."""
    matplotlib = require("matplotlib", "the HTML report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
        return atomic_write_text(path, self.render())


def register_sections(method: str, holds: Callable[[Path], bool], title: str | None = None):
    """Decorator: ``fn(run_dir, **options) -> [(title, html), ...]`` gives ``method``'s report sections.

    Args:
        method: The method package's name (``autoencode``, ``outliers``, ...).
        holds: ``holds(run_dir)`` says whether a run folder holds that method's results.
        title: Page title when a run holds only this method's results.
    """

    def deco(fn: Callable[..., list[tuple[str, str]]]) -> Callable[..., list[tuple[str, str]]]:
        _PROVIDERS[method] = (holds, fn)
        _TITLES[method] = title or f"speculum: {method}"
        return fn

    return deco


def build_report(run_dir: str | Path, out: str | Path | None = None, title: str | None = None, **options) -> Path:
    """One HTML page with the sections of every method whose results ``run_dir`` holds.

    Args:
        run_dir: A run folder (e.g. of ``speculum train``).
        out: HTML file (default ``run_dir/report.html``).
        title: Page title (default: names the methods found).
        **options: Passed to each method's section function that takes them (e.g. ``data=``,
            ``progress=``).

    Raises:
        FileNotFoundError: when no method recognises the folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    for name in METHODS:
        importlib.import_module(f"speculum.{name}")  # registers its sections
    found = [m for m, (holds, _) in _PROVIDERS.items() if holds(run_dir)]
    if not found:
        raise FileNotFoundError(
            f"{run_dir}: holds no results of any method ({', '.join(sorted(_PROVIDERS))}); "
            "is it a run folder of `speculum train`?"
        )
    default = _TITLES[found[0]] if len(found) == 1 else f"speculum: {', '.join(found)}"
    page = Report(title or default, subtitle=f"run: {run_dir.resolve()}")
    for m in found:
        fn = _PROVIDERS[m][1]
        accepted = inspect.signature(fn).parameters
        for name, body in fn(run_dir, **{k: v for k, v in options.items() if k in accepted}):
            page.add(name, body)
    return page.write(Path(out) if out is not None else run_dir / "report.html")
