"""Self-contained HTML reports; each method contributes sections."""

from speculum.report.builder import Report, figure_to_html

__all__ = ["Report", "figure_to_html"]
