"""The documentation holds together: README stays short, every docs page is reachable from it, and every
relative link in README.md and docs/*.md points at a file that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 150

#: a markdown link or image target: ](target) or ](target "title")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = ("http://", "https://", "mailto:")


def links(page: Path) -> list[str]:
    """The link targets of a markdown page, fenced code blocks left out (they show commands, not links)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return _LINK.findall(text)


def relative_links() -> list[tuple[str, str]]:
    """(page, target) for every relative link of README.md and docs/*.md."""
    out = []
    for page in [README, *DOCS]:
        for target in links(page):
            if target.startswith(_EXTERNAL) or target.startswith("#"):
                continue
            out.append((str(page.relative_to(ROOT)), target))
    return out


RELATIVE = relative_links()


def test_links_were_found() -> None:
    # an empty parametrization below would pass without checking anything
    assert DOCS, "no docs/*.md pages"
    assert len(RELATIVE) >= len(DOCS), f"only {len(RELATIVE)} relative links found: is the link pattern broken?"


@pytest.mark.parametrize(("page", "target"), RELATIVE, ids=[f"{p}->{t}" for p, t in RELATIVE])
def test_relative_link_resolves(page: str, target: str) -> None:
    path = target.split("#", 1)[0]
    assert path, f"{page}: empty link target {target!r}"
    resolved = (ROOT / page).parent / path
    assert resolved.exists(), f"{page}: link {target!r} points at {resolved.relative_to(ROOT)}, which does not exist"


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES} (move detail into docs/)"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_docs_page_is_linked_from_readme(doc: Path) -> None:
    targets = {t.split("#", 1)[0] for t in links(README)}
    assert f"docs/{doc.name}" in targets, f"docs/{doc.name} is not linked from README.md"


def test_readme_keeps_the_ci_test_command() -> None:
    # .ci/run runs "README's test command"
    assert "python3 -m pytest -q" in README.read_text(encoding="utf-8")
