"""The file names of the dashboard pages, so that every page can link every other."""

from __future__ import annotations

import re

AUDIT_PAGE = "audit.html"
INDEX_PAGE = "index.html"


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def run_page_name(run_id: str) -> str:
    return f"run-{slug(run_id)}.html"


def compare_page_name(a: str, b: str) -> str:
    return f"compare-{slug(a)}-vs-{slug(b)}.html"


