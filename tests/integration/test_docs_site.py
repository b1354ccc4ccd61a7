"""The MkDocs site builds offline with --strict, has search and the benchmark plot, and fails on a
page left out of the nav or a broken link (what ``make docs-check`` runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow


def build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(out)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(root)},
        timeout=300,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    return root


def test_site_builds_with_search_and_the_benchmark_plot(project: Path, tmp_path: Path) -> None:
    proc = build(project, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    assert {p.stem for p in (REPO / "docs").glob("*.md")} <= {p.stem for p in site.glob("*.html")}
    assert "Benchmarks" in (site / "search" / "search_index.json").read_text()
    assert 'src="step_times.png"' in (site / "benchmarks.html").read_text()
    assert (site / "step_times.png").is_file()
    assert not list(site.glob("*.py"))  # the reference generator is a tool, not a page
    for page in site.glob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(), page


def test_a_page_missing_from_the_nav_fails_the_build(project: Path, tmp_path: Path) -> None:
    (project / "docs" / "extra.md").write_text("# Extra\n\nBack to [the index](index.md).\n")
    proc = build(project, tmp_path / "site")
    assert proc.returncode == 1
    assert "extra.md" in proc.stderr and 'not included in the "nav"' in proc.stderr


def test_a_broken_link_fails_the_build(project: Path, tmp_path: Path) -> None:
    index = project / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [nothing](no-such-page.md).\n")
    proc = build(project, tmp_path / "site")
    assert proc.returncode == 1 and "no-such-page.md" in proc.stderr
