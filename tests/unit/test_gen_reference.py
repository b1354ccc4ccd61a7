"""The config reference (docs/gen_reference.py, a dev tool outside the package) covers every field,
and its check catches a stale page or a field without help."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import typing
from pathlib import Path
from types import ModuleType

import pytest

from expconf.config.root import RootConfig
from helpers import REPO


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs = _load_tool()


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


def test_committed_reference_is_current() -> None:
    assert docs.check() == []


def test_the_tool_is_not_in_the_installed_package() -> None:
    assert not (REPO / "expconf" / "docs.py").exists()


@pytest.fixture
def doc_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO / "docs", tmp_path / "docs"))


def test_check_fails_on_a_stale_reference(doc_copy: Path) -> None:
    ref = doc_copy / "reference.md"
    ref.write_text(ref.read_text().replace("`log.ckpt.save_top_k`", "`log.ckpt.keep`"))
    [problem] = docs.check(doc_copy)
    assert "stale" in problem
