"""Every relative link of README.md and docs/*.md resolves: the file exists and, with a
``#fragment``, the target page has a heading with that anchor (GitHub's rule for anchors)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def _prose(text: str) -> str:
    """The page without fenced code blocks and code spans (links there are not links)."""
    return _CODE.sub("", _FENCE.sub("", text))


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: the text of links, lower case, punctuation dropped
    (word characters, spaces and hyphens kept), spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, repeated titles numbered -1, -2, ... as GitHub does."""
    seen: Counter[str] = Counter()
    found = set()
    for title in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base = anchor(title)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` that lead nowhere, each as 'target: why'."""
    problems = []
    for target in _LINK.findall(_prose(page.read_text())):
        if not target or _EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no file {resolved}")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor '{fragment}' in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO_ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_anchors_follow_githubs_rule() -> None:
    assert anchor("Model repository (`models/`)") == "model-repository-models"
    assert anchor("Active learning: which rows to label next") == (
        "active-learning-which-rows-to-label-next"
    )
    assert anchor("Soak: mixed valid and invalid traffic for 5 minutes") == (
        "soak-mixed-valid-and-invalid-traffic-for-5-minutes"
    )
    assert anchor("The [web page](web-page.md), in short") == "the-web-page-in-short"


def test_a_broken_file_anchor_or_code_span_is_told_apart(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n\n[ok](other.md) [ok](other.md#other-page) [ok](other.md#twice-1) [ok](#top)\n"
        "![ok](other.md) [web](https://example.com/x#y) `[not a link](nowhere.md)`\n"
        "```\n[not a link](nowhere.md)\n```\n"
        "[gone](missing.md) [bad](other.md#nope) [bad](#twice-2)\n"
    )
    problems = broken_links(page)
    assert [problem.split(":")[0] for problem in problems] == [
        "missing.md",
        "other.md#nope",
        "#twice-2",
    ]
