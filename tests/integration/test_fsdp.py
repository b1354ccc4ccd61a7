"""``trainer.strategy=fsdp`` from the CLI: two gloo ranks with FSDP2, preempted by a real SIGTERM, resumed.

The losses are compared with one process training the same global batch. They are close, not
bitwise equal: FSDP sums each gradient with a reduce-scatter over the ranks' halves of the batch
where one process sums the whole batch in one backward pass, a different order of float additions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fault_probe import read_log

import helpers
from helpers import REPO, TINY

pytestmark = pytest.mark.slow

STEPS = 4
BASE = [
    *TINY,
    "model.n_layer=2",
    "trainer.accelerator=cpu",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "trainer.limit_val_batches=1",
    "data.global_batch_size=8",
    "log.name=fsdp",
    "log.version=v1",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]
FSDP = ["trainer.devices=2", "trainer.strategy=fsdp", "data.micro_batch_size=4"]
#: Measured on x86-64: the largest relative difference of a step's loss from one process's was 1.7e-7.
LOSS_RTOL = 1e-5


def run(cwd: Path, *extra: str, probe: Path | None = None, signal_at: int = -1) -> subprocess.CompletedProcess[str]:
    """``python -m expconf.train`` with BASE and ``extra``; with ``probe``, tests/fault_probe.py logs steps."""
    args = [*BASE, *extra]
    if probe is not None:
        args.append(f"callbacks.extra=[{{_target_:fault_probe.StepProbe,path:'{probe}',signal_at:{signal_at}}}]")
    env = helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"))
    return subprocess.run(
        [sys.executable, "-m", "expconf.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def step_losses(run_dir: Path) -> dict[int, float]:
    """``reduced_train_loss`` by step from every TensorBoard file of a run dir (a resumed run adds one)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "reduced_train_loss" in acc.Tags().get("scalars", []):
            out.update({e.step: e.value for e in acc.Scalars("reduced_train_loss")})
    return out


def test_fsdp_two_ranks_preempted_and_resumed_track_one_process(tmp_path: Path) -> None:
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    single.mkdir()
    sharded.mkdir()
    ref = run(single, "trainer.devices=1", "data.micro_batch_size=8")
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = step_losses(single / "nemo_experiments" / "fsdp" / "v1")
    assert len(want) == STEPS

    probe = tmp_path / "probe.log"
    # Rank 0 signals itself after step 2; the ranks agree to stop after step 3 and save '-last'.
    first = run(sharded, *FSDP, "trainer.fsdp.activation_checkpointing=true", probe=probe, signal_at=2)
    assert first.returncode == 75, first.stderr[-3000:]
    run_dir = sharded / "nemo_experiments" / "fsdp" / "v1"
    [last] = (run_dir / "checkpoints").glob("*-last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=True)  # plain tensors, no DTensor
    assert saved["global_step"] == 3 and len(saved["expconf_rng"]["per_rank"]) == 2
    assert saved["state_dict"]["model.blocks.1.mlp.0.weight"].shape == (128, 32)  # the whole tensor
    assert len(saved["optimizer_states"][0]["state"]) == len(saved["state_dict"]) - 1  # lm_head is tied

    again = run(sharded, *FSDP, "trainer.fsdp.activation_checkpointing=true", probe=probe)
    assert again.returncode == 0, again.stderr[-3000:]
    _, starts, _ = read_log(probe)
    assert starts == [0, 3]
    got = step_losses(run_dir)
    assert sorted(got) == sorted(want)
    for step, loss in want.items():
        assert got[step] == pytest.approx(loss, rel=LOSS_RTOL), (step, got[step], loss)
    logs = sorted(p.name for p in run_dir.glob("nemo_log_*.txt"))
    assert logs == ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"]
