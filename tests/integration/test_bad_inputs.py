"""A handful of bad inputs as real processes: exit code 2, one stderr line, nothing written.

The full corpus runs in-process in ``tests/unit/test_errors_corpus.py``; these check what only a
real process shows: the interpreter's exit code, that stderr carries nothing else (no Hydra
banner, no traceback), the default S3 retry path against a refused port, and EXPCONF_DEBUG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["+recipe=gpt", "trainer.max_stepz=3"], {}, ["trainer.max_stepz", "did you mean 'trainer.max_steps'?"]),
        (["+recipe=gtp"], {}, ["recipe", "did you mean 'gpt'?"]),
        (["+recipe=gpt", "--config-dir", "conf", "+experiment=broken"], {}, ["broken.yaml:3", "malformed YAML"]),
        (
            ["+recipe=gpt", "log.ckpt.dirpath=s3://bucket/x"],
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b" * 12},
            ["log.ckpt.dirpath", "s3://bucket/x", "reachable"],
        ),
    ],
    ids=["unknown-key", "unknown-recipe", "yaml", "s3-closed-port"],
)
def test_bad_input_process(tmp_path: Path, args: list[str], env: dict[str, str], says: list[str]) -> None:
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "broken.yaml").write_text("# @package _global_\ntrainer:\n\tmax_steps: 3\n")
    proc = run_cli(args, cwd=tmp_path, timeout=240, **env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_error_line(proc.stderr)
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert "b" * 12 not in proc.stderr + proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf"], "nothing may be written"


def test_debug_switch_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=gpt", "log.ckpt.mode=mid"], cwd=tmp_path, timeout=240, EXPCONF_DEBUG="1")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "log.ckpt.mode='mid'" in proc.stderr
    assert list(tmp_path.iterdir()) == []
