"""``trainer.devices=2 trainer.strategy=ddp`` from the CLI: two gloo ranks, one run dir, rank 0 writes.

One test runs both trainings (one process, then two DDP ranks with the same global batch) to keep
the cost of starting processes on a small machine down.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from expconf.callbacks.job_record import config_digest
from helpers import REPO, TINY, run_cli, run_dirs, scalars

pytestmark = pytest.mark.slow

AUDIT = REPO / "tests" / "integration" / "write_audit"
STEPS = 3
COMMON = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "trainer.limit_val_batches=1",
    "trainer.accelerator=cpu",
    "data.global_batch_size=8",
]
RECORD = re.compile(r"expconf job config \(global rank (\d+) of (\d+)\): sha256=([0-9a-f]{64})")


def audit_env(tmp_path: Path) -> dict[str, str]:
    """Environment that makes every process record the files it writes (see write_audit/)."""
    audit = tmp_path / "audit"
    audit.mkdir()
    return {"PYTHONPATH": str(AUDIT), "EXPCONF_AUDIT_ROOT": str(tmp_path / "work"), "EXPCONF_AUDIT_DIR": str(audit)}


def writes_by_rank(tmp_path: Path) -> dict[str, set[str]]:
    """Files written per process, keyed by the rank the process had (the launcher counts as '0')."""
    out: dict[str, set[str]] = {}
    for f in (tmp_path / "audit").glob("*.tsv"):
        rows = [line.split("\t", 1) for line in f.read_text().splitlines()]
        ranks = {r for r, _ in rows if r != "-"}
        rank = max(ranks) if ranks else "0"
        out.setdefault(rank, set()).update(p for _, p in rows)
    return out


def rank_records(run_dir: Path) -> dict[int, str]:
    """Global rank -> digest of the job config that rank logged into its own log file."""
    found: dict[int, str] = {}
    for log in run_dir.glob("nemo_log_globalrank-*_localrank-*.txt"):
        for m in RECORD.finditer(log.read_text()):
            found[int(m.group(1))] = m.group(3)
    return found


def test_ddp_two_ranks_match_one_process(tmp_path: Path) -> None:
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "work"
    single_dir.mkdir()
    ddp_dir.mkdir()
    single = run_cli([*COMMON, "data.micro_batch_size=8", "trainer.devices=1"], cwd=single_dir)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_cli(
        [*COMMON, "data.micro_batch_size=4", "trainer.devices=2", "trainer.strategy=ddp"],
        cwd=ddp_dir,
        **audit_env(tmp_path),
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    # One run dir (one version) for both ranks, with a log file per rank inside it.
    [run_dir] = run_dirs(ddp_dir / "nemo_experiments")
    assert [p.name for p in (ddp_dir / "nemo_experiments" / "gpt").iterdir()] == [run_dir.name]
    logs = sorted(p.name for p in run_dir.glob("nemo_log_*.txt"))
    assert logs == ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"]
    assert ddp.stdout.count("run dir:") == 1

    # Both ranks trained the job whose config rank 0 saved.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert rank_records(run_dir) == {0: config_digest(saved), 1: config_digest(saved)}

    # Only rank 0 wrote checkpoints, configs and TensorBoard files; rank 1 wrote its own log only.
    writes = writes_by_rank(tmp_path)
    assert set(writes) == {"0", "1"}, writes.keys()
    assert {Path(p).name for p in writes["1"]} == {"nemo_log_globalrank-1_localrank-1.txt"}
    rank0 = {
        Path(p).relative_to(run_dir).parts[0]
        for p in writes["0"]
        if Path(p).is_relative_to(run_dir) and Path(p) != run_dir
    }
    assert {"checkpoints", "config.yaml", "cmd-args.log", "tb_logs"} <= rank0
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 3 and all((run_dir / "checkpoints" / f"{n}.meta.json").is_file() for n in ckpts), ckpts

    # Same global batch -> the same per-step loss (mean over ranks) as one process.
    [single_run] = run_dirs(single_dir / "nemo_experiments")
    want = scalars(single_run, "reduced_train_loss")
    got = scalars(run_dir, "reduced_train_loss")
    assert [s for s, _ in got] == [s for s, _ in want] and len(want) == STEPS
    for (step, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5), (step, a, b)
