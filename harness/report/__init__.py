"""Offline HTML dashboards from the results database (plotly.js inlined once per page)."""

from harness.report.data import ReportError
from harness.report.render import DEFAULT_OUT, render, write_audit

__all__ = ["DEFAULT_OUT", "ReportError", "render", "write_audit"]
