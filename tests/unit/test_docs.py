"""The docs: the generated reference covers every field, and the check catches stale or broken docs."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import pytest

from expconf import docs
from expconf.config.root import RootConfig
from helpers import REPO


def _all_keys() -> list[tuple[str, dataclasses.Field[object]]]:
    out = []
    todo: list[tuple[str, type]] = [("", RootConfig)]
    while todo:
        prefix, cls = todo.pop()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            out.append((f"{prefix}{f.name}", f))
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
                todo.append((f"{prefix}{f.name}.", hints[f.name]))
    return out


def test_reference_lists_every_field_with_type_default_and_help() -> None:
    text = docs.reference()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `")}
    for key, f in _all_keys():
        assert key in rows, key
        assert str(f.metadata["help"]).replace("|", "\\|") in rows[key], key
    assert "| `log.ckpt.save_top_k` | `int` | `3` |" in text
    assert "| `log.ckpt.dirpath` | `str or null` | `null` |" in text
    assert "EXPCONF_DEBUG" in text and "EXPCONF_ALLOWED_TARGETS" in text
    assert "`gpt_124m`" in text  # group options


def test_committed_reference_is_current_and_the_site_builds() -> None:
    assert docs.check() == []


@pytest.fixture
def doc_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO / "docs", tmp_path / "docs"))


def test_check_fails_on_a_stale_reference(doc_copy: Path) -> None:
    ref = doc_copy / "reference.md"
    ref.write_text(ref.read_text().replace("`log.ckpt.save_top_k`", "`log.ckpt.keep`"))
    [problem] = docs.check(doc_copy)
    assert "stale" in problem


def test_check_fails_on_a_broken_link_but_tolerates_pending_pages(doc_copy: Path) -> None:
    (doc_copy / "extra.md").write_text("# Extra\n\nSee [S3](s3.md) and [nothing](no-such-page.md).\n")
    assert docs.check(doc_copy) == ["broken link in extra.md: no-such-page.md"]


def test_cli_check_exit_code(doc_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "DOCS", doc_copy)
    assert docs.main(["check"]) == 0
    (doc_copy / "reference.md").write_text("# old\n")
    assert docs.main(["check"]) == 1


def test_build_renders_every_page_including_new_ones(doc_copy: Path, tmp_path: Path) -> None:
    (doc_copy / "s3.md").write_text("# Checkpoints on S3\n\nBack to [the index](index.md).\n")
    written = docs.build_site(tmp_path / "site", doc_copy)
    names = {p.name for p in written}
    assert {"index.html", "reference.html", "migration.html", "s3.html", "getting-started.html"} <= names
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="s3.html"' in index and '.md"' not in index
    assert "<table>" in (tmp_path / "site" / "reference.html").read_text()
