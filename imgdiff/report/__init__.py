"""Reports: JSON-ready dictionaries, Markdown, and writing a report folder.

:func:`compare_report` / :func:`write_compare` for :func:`imgdiff.compare`; :func:`verify_report` /
:func:`write_verify` for :func:`imgdiff.verify` (what ``imgdiff verify`` writes).
"""

from .compare import REPORT_SCHEMA_VERSION, compare_report, render_markdown, write_compare
from .verify import VERIFY_OUTPUTS, render_verify_markdown, verify_report, write_verify

__all__ = ["REPORT_SCHEMA_VERSION", "compare_report", "render_markdown", "write_compare"]
__all__ += ["VERIFY_OUTPUTS", "render_verify_markdown", "verify_report", "write_verify"]
