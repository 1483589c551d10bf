"""Self-contained HTML reports: one builder; each method contributes sections."""

from speculum.report.builder import (
    METHODS,
    Report,
    build_report,
    figure_to_html,
    pyplot,
    register_sections,
    table_to_html,
)

__all__ = ["METHODS", "Report", "build_report", "figure_to_html", "pyplot", "register_sections", "table_to_html"]
