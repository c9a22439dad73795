"""The generated results page equals what tools/make_docs.py writes from benchmarks/results/ now, and every
relative link in the README and docs/ points at a file (and heading) that exists: numbers and links in the
user-facing pages cannot drift from their sources unnoticed. No benchmark runs: milliseconds."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "tools" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_page_is_generated_from_the_results_files():
    make_docs = _make_docs()
    committed = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert committed == make_docs.render(), "docs/results.md is out of date: run python tools/make_docs.py"


def test_every_result_file_has_a_section():
    make_docs = _make_docs()
    page = make_docs.render()
    for path in (ROOT / "benchmarks" / "results").glob("*.md"):
        assert f"\n### {path.stem}\n" in page


def _anchors(page: Path, anchor) -> set[str]:
    """GitHub's anchors of a page's headings (a repeated heading gets -1, -2, ...), outside code fences."""
    seen: dict[str, int] = {}
    anchors = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6} (.*)", line)
        if match:
            base = anchor(match.group(1).strip())
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def test_relative_links_resolve():
    anchor = _make_docs().anchor
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, fragment = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked, anchor):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
