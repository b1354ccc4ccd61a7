"""``python -m expconf.runs show|ls`` over run dirs laid out like expconf writes them."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import helpers
from expconf import runs
from expconf.checkpoint.meta import CheckpointMeta, marker_name


def checkpoint(folder: Path, name: str, step: int, kind: str, score: float | None, complete: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"x" * 10)
    if complete:
        meta = CheckpointMeta(name=name, global_step=step, epoch=0, kind=kind, monitor="val_loss", score=score)
        (folder / marker_name(name)).write_bytes(meta.to_json())


def make_run(run_dir: Path, resume_past_end: bool = False) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "cmd-args.log").write_text("/venv/lib/python3.11/site-packages/expconf/train.py +recipe=gpt\n")
    cfg = {
        "log": {"ckpt": {"dirpath": None, "monitor": "val_loss", "mode": "min"}},
        "resume": {"dirpath": None, "resume_past_end": resume_past_end},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run_dir / "checkpoints"


def test_show_lists_candidates_incomplete_and_the_choice(tmp_path: Path) -> None:
    ck = make_run(tmp_path / "gpt" / "v1")
    checkpoint(ck, "m--step=10-last.ckpt", 10, "last", 2.5)
    checkpoint(ck, "m--step=20-last.ckpt", 20, "last", 2.0)
    checkpoint(ck, "m--step=20.ckpt", 20, "topk", 2.0)
    checkpoint(ck, "m--step=30-last.ckpt", 30, "last", None, complete=False)  # cut off mid-write
    (ck / ".m--step=31.ckpt.tmp-abc").write_bytes(b"")
    out = io.StringIO()
    assert runs.show(tmp_path / "gpt" / "v1", out) == 0
    text = out.getvalue()
    cand = text.split("candidates ('-last'")[1].split("other complete")[0]
    assert "m--step=10-last.ckpt" in cand and "m--step=20-last.ckpt" in cand
    assert "m--step=30-last.ckpt" not in cand
    incomplete = text.split("incomplete (no completion")[1].split("resume would")[0]
    assert "m--step=30-last.ckpt" in incomplete and ".m--step=31.ckpt.tmp-abc" in incomplete
    assert f"resume would pick: {ck}/m--step=20-last.ckpt" in text
    assert "at step 20, because: highest global step (20) of 2 '-last' checkpoints" in text


def test_show_explains_why_resume_would_fail_or_start_nothing(tmp_path: Path) -> None:
    ck = make_run(tmp_path / "r")
    checkpoint(ck, "m-last.ckpt", 5, "last", None, complete=False)
    out = io.StringIO()
    assert runs.show(tmp_path / "r", out) == 1
    assert "resume would fail: only incomplete checkpoints" in out.getvalue()
    checkpoint(ck, "m-end.ckpt", 9, "end", None)
    out = io.StringIO()
    assert runs.show(tmp_path / "r", out) == 0, "a finished run is not an error"
    assert "resume would pick: nothing: training already completed" in out.getvalue()


def test_show_names_a_damaged_checkpoint_and_the_fallback(tmp_path: Path) -> None:
    ck = make_run(tmp_path / "r")
    checkpoint(ck, "m--step=5.ckpt", 5, "topk", 2.0)
    checkpoint(ck, "m--step=6-last.ckpt", 6, "last", None)
    marker = CheckpointMeta.from_json((ck / marker_name("m--step=6-last.ckpt")).read_bytes())
    marker.size_bytes = 99  # the file has 10 bytes: cut off after its marker was written
    (ck / marker_name("m--step=6-last.ckpt")).write_bytes(marker.to_json())
    out = io.StringIO()
    assert runs.show(tmp_path / "r", out) == 0
    text = out.getvalue()
    assert f"resume would pick: {ck}/m--step=5.ckpt" in text and "no '-last' checkpoint verifies" in text
    assert f"passed over, damaged: {ck}/m--step=6-last.ckpt (it has 10 bytes, its marker records 99)" in text


def test_show_honours_resume_past_end_from_the_run_config(tmp_path: Path) -> None:
    ck = make_run(tmp_path / "r", resume_past_end=True)
    checkpoint(ck, "m-last.ckpt", 5, "last", None)
    checkpoint(ck, "m-end.ckpt", 9, "end", None)
    out = io.StringIO()
    assert runs.show(tmp_path / "r", out) == 0
    assert "resume would pick:" in out.getvalue() and "m-end.ckpt" in out.getvalue().split("resume would pick:")[1]


def _table(text: str) -> dict[str, list[str]]:
    """``runs ls`` output as {NAME/VERSION: cells}, cells split on the header's column starts."""
    header, *lines = text.splitlines()
    starts = [header.index(c) for c in runs.COLUMNS]
    out = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        out[f"{cells[0]}/{cells[1]}"] = cells
    return out


def test_ls_prints_a_table_of_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path / "gpt" / "a")
    checkpoint(a, "m--step=4.ckpt", 4, "topk", 3.0)
    checkpoint(a, "m--step=8.ckpt", 8, "topk", 2.0)
    checkpoint(a, "m--step=8-last.ckpt", 8, "last", 2.0)
    checkpoint(a, "m--step=12-end.ckpt", 12, "end", 2.1)
    (tmp_path / "gpt" / "a" / "overrides.yaml").write_text(yaml.safe_dump(["+recipe=gpt", "optim.lr=0.001"]))
    b = make_run(tmp_path / "gpt" / "b")
    checkpoint(b, "m--step=3-last.ckpt", 3, "last", None)
    make_run(tmp_path / "other" / "c")
    (tmp_path / "gpt" / "a" / "run_0").mkdir()
    (tmp_path / "gpt" / "a" / "run_0" / "cmd-args.log").write_text("")
    out = io.StringIO()
    assert runs.ls(tmp_path, out) == 0
    text = out.getvalue()
    assert text.splitlines()[0].split() == list(runs.COLUMNS)
    table = _table(text)
    assert table["gpt/a"] == ["gpt", "a", "run", "completed", "12", "val_loss=2 (step 8)", "+recipe=gpt optim.lr=0.001"]
    assert table["gpt/b"][3:6] == ["resumable", "3", "-"]
    assert table["other/c"][3:6] == ["no checkpoint", "-", "-"]
    assert "run_0" not in text


def test_ls_marks_sweep_jobs(tmp_path: Path) -> None:
    for version, lr in (("0", "1e-3"), ("1", "2e-3")):
        make_run(tmp_path / "lr" / version)
        (tmp_path / "lr" / version / "cmd-args.log").write_text(f"/x/expconf/train.py -m +recipe=gpt optim.lr={lr},x\n")
        (tmp_path / "lr" / version / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}"]))
    make_run(tmp_path / "single" / "v")
    out = io.StringIO()
    assert runs.ls(tmp_path, out) == 0
    table = _table(out.getvalue())
    assert [table[k][2] for k in ("lr/0", "lr/1", "single/v")] == ["sweep job", "sweep job", "run"]
    assert table["lr/1"][6] == "optim.lr=2e-3"


def test_ls_survives_a_malformed_run(tmp_path: Path) -> None:
    make_run(tmp_path / "good" / "v")
    make_run(tmp_path / "bad" / "v")
    (tmp_path / "bad" / "v" / "config.yaml").write_text("log: [unclosed\n")
    out = io.StringIO()
    assert runs.ls(tmp_path, out) == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    [bad] = [line for line in lines if line.startswith("bad")]
    assert "unreadable: " in bad and ("ScannerError" in bad or "ParserError" in bad)
    [good] = [line for line in lines if line.startswith("good")]
    assert "no checkpoint" in good


def test_cli_entry_point(tmp_path: Path) -> None:
    ck = make_run(tmp_path / "r")
    checkpoint(ck, "m-last.ckpt", 3, "last", None)
    env = helpers.cli_env()
    proc = subprocess.run(
        [sys.executable, "-m", "expconf.runs", "show", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resume would pick:" in proc.stdout and "the only '-last' checkpoint" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "expconf.runs", "ls", str(tmp_path / "missing")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_show_on_a_live_run_tolerates_a_checkpoint_deleted_while_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live run replaces its '-last' between the folder listing and the marker read (the race of
    the S3 preemption test): the deleted checkpoint is left out, the rest is reported as usual."""
    from expconf.storage import Storage

    ck = make_run(tmp_path / "live")
    checkpoint(ck, "m--step=10-last.ckpt", 10, "last", 2.5)
    checkpoint(ck, "m--step=20-last.ckpt", 20, "last", 2.0)
    listdir = Storage.listdir

    def listdir_then_delete(self: Storage) -> list[str]:
        names = listdir(self)
        # What the run's writer does to an old '-last' right after this listing: marker first, then bytes.
        (ck / marker_name("m--step=10-last.ckpt")).unlink(missing_ok=True)
        (ck / "m--step=10-last.ckpt").unlink(missing_ok=True)
        return names

    monkeypatch.setattr(Storage, "listdir", listdir_then_delete)
    out = io.StringIO()
    assert runs.show(tmp_path / "live", out) == 0
    text = out.getvalue()
    assert "m--step=10-last.ckpt" not in text
    assert f"resume would pick: {ck}/m--step=20-last.ckpt" in text


@pytest.mark.parametrize(
    "marker",
    ['{"name": 3, "global_step": "abc", "epoch": [1], "kind": 5}', "[1, 2]", '{"name": "m-last.ckpt"}', "{"],
    ids=["wrong-types", "not-an-object", "fields-missing", "not-json"],
)
def test_a_malformed_marker_makes_its_checkpoint_incomplete(tmp_path: Path, marker: str) -> None:
    ck = make_run(tmp_path / "r")
    checkpoint(ck, "m--step=3-last.ckpt", 3, "last", 2.0)
    checkpoint(ck, "m--step=5-last.ckpt", 5, "last", 1.0)
    (ck / marker_name("m--step=5-last.ckpt")).write_text(marker)
    out = io.StringIO()
    assert runs.show(tmp_path / "r", out) == 0
    text = out.getvalue()
    assert "resume would pick: " in text and text.count("m--step=3-last.ckpt") == 2
    assert "m--step=5-last.ckpt\n" in text.split("incomplete")[1]


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("log: [unclosed\n", "not readable as YAML (ParserError"),
        ("[1, 2]\n", "the file is not a mapping (found list)"),
        ("log: {ckpt: 3}\n", "log.ckpt is not a mapping (found int)"),
    ],
    ids=["yaml", "list", "node"],
)
def test_show_reports_a_malformed_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, says: str
) -> None:
    make_run(tmp_path / "r")
    (tmp_path / "r" / "config.yaml").write_text(config)
    with pytest.raises(SystemExit) as info:
        runs.main(["show", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'r' / 'config.yaml'}: "), err
    assert says in err
