"""A handful of bad inputs as real processes: exit code 2, one stderr line, nothing written.

The full corpus runs in-process in ``tests/unit/test_errors_corpus.py``; these check what only a
real process shows: the interpreter's exit code, that stderr carries nothing else (no Hydra
banner, no traceback), the default S3 retry path against a refused port, and EXPCONF_DEBUG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY, run_cli, run_dirs

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
        (
            ["+recipe=gpt", "trainer.devices=2", "trainer.strategy=ddp"],
            {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0"},
            ["SLURM_NTASKS=2", "--ntasks-per-node=2"],
        ),
    ],
    ids=["unknown-key", "unknown-recipe", "yaml", "s3-closed-port", "slurm-ntasks-alone"],
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


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``folder``: modification time and a content digest (folders: ''),
    except the run lock's file, which every start rewrites with its holder."""
    import hashlib

    from expconf.run_lock import LOCK_NAME

    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in sorted(folder.rglob("*"))
        if p.name != LOCK_NAME
    }


def test_resume_into_another_shape_leaves_the_run_dir_as_it_was(tmp_path: Path) -> None:
    """The second start picks the first's checkpoint, which does not fit its wider model: one line,
    exit 2, and no rewritten config.yaml, no run_<k>/ folder, nothing else changed."""
    common = [
        *[a for a in TINY if not a.startswith("model.n_embd=")],
        "trainer.accelerator=cpu",
        "log.name=shape",
        "resume.resume_if_exists=true",
        "resume.resume_ignore_no_checkpoint=true",
        "resume.resume_past_end=true",
        "log.ckpt.every_n_train_steps=1",
    ]
    first = run_cli([*common, "model.n_embd=32", "trainer.max_steps=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [run_dir] = run_dirs(tmp_path)
    before = _snapshot(run_dir)
    proc = run_cli([*common, "model.n_embd=64", "trainer.max_steps=4"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_error_line(proc.stderr)
    assert "resume.resume_if_exists=true picked " in line and "-end.ckpt" in line, line
    assert "expected a checkpoint of this model" in line and "is [256, 32] there, [256, 64] here" in line, line
    assert _snapshot(run_dir) == before


def test_a_nan_loss_stops_the_run_with_exit_code_3(tmp_path: Path) -> None:
    """optim.lr=1e30 is finite (valid) but overflows the weights: the loss turns NaN or infinite
    within a few steps; no checkpoint of that state or later is written."""
    import re

    from expconf.checkpoint.meta import scan
    from expconf.storage import Storage

    proc = run_cli(
        [
            *TINY,
            "trainer.accelerator=cpu",
            "log.name=nan",
            "trainer.max_steps=8",
            "log.ckpt.every_n_train_steps=1",
            "optim.lr=1e30",
            "optim.warmup_steps=0",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = _one_error_line(proc.stderr)
    found = re.search(r"training loss became NaN or infinite in global step (\d+); stopped before saving", line)
    assert found, line
    [run_dir] = run_dirs(tmp_path)
    listing = scan(Storage(str(run_dir / "checkpoints")))
    assert listing.complete and not listing.incomplete
    assert max(m.global_step for m in listing.complete.values()) < int(found.group(1))
    assert not listing.by_kind("end")


def test_runs_ls_lists_the_good_runs_and_one_line_for_a_bad_one(tmp_path: Path) -> None:
    import yaml

    from expconf.checkpoint.meta import CheckpointMeta, marker_name

    for name in ("good1", "good2", "bad"):
        run_dir = tmp_path / name / "v1"
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "cmd-args.log").write_text("expconf/train.py +recipe=gpt\n")
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"log": {"ckpt": {"monitor": "val_loss"}}}))
        ckpt = "m--step=4-last.ckpt"
        (run_dir / "checkpoints" / ckpt).write_bytes(b"x")
        meta = CheckpointMeta(name=ckpt, global_step=4, epoch=0, kind="last", monitor="val_loss", score=1.5)
        (run_dir / "checkpoints" / marker_name(ckpt)).write_bytes(meta.to_json())
    (tmp_path / "bad" / "v1" / "config.yaml").write_text("log: [unclosed\n")
    proc = run_cli(["ls", str(tmp_path)], cwd=tmp_path, module="expconf.runs")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    rows = proc.stdout.splitlines()
    assert len(rows) == 4 and rows[0].startswith("NAME")
    [bad] = [r for r in rows if r.startswith("bad ")]
    assert "unreadable: " in bad and "config.yaml: not readable as YAML" in bad
    good = [r.split() for r in rows if r.startswith("good")]
    assert [r[:5] for r in good] == [["good1", "v1", "run", "resumable", "4"], ["good2", "v1", "run", "resumable", "4"]]
