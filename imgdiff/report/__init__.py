"""Reports: JSON-ready dictionaries, Markdown, and writing a report folder."""

from .compare import REPORT_SCHEMA_VERSION, compare_report, render_markdown, write_compare

__all__ = ["REPORT_SCHEMA_VERSION", "compare_report", "render_markdown", "write_compare"]
