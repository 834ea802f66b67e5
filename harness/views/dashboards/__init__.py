"""Offline HTML dashboards from the results database (plotly.js inlined once per page)."""

from harness.views.dashboards.data import ReportError
from harness.views.dashboards.render import DEFAULT_OUT, render, write_audit

__all__ = ["DEFAULT_OUT", "ReportError", "render", "write_audit"]
