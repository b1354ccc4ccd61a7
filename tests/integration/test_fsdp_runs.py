"""``trainer.strategy=fsdp`` from the CLI: two gloo ranks with FSDP2, preempted by a real SIGTERM, resumed;
sharded checkpoints; checkpoints resumed on another number of ranks (FSDP and DDP); ranks started by
torchrun and as SLURM tasks.

The losses are compared with one process training the same global batch. They are close, not
bitwise equal: with two ranks each gradient is summed by a reduce-scatter or all-reduce over the
ranks' halves of the batch, and with accumulation over micro-batches, where one process sums the
whole batch in one backward pass: the same numbers added in a different order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from daemons import free_ports
from fault_probe import read_log
from s3server import ACCESS_KEY, SECRET_KEY, SeaweedS3

import helpers
from expconf.checkpoint.meta import CheckpointMeta
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
    "optim.warmup_steps=1",
    f"optim.decay_steps={STEPS}",  # the schedule must not depend on max_steps (runs resume past their end)
]
FSDP = ["trainer.devices=2", "trainer.strategy=fsdp", "data.micro_batch_size=4"]
#: Measured on x86-64: the largest relative difference of a step's loss from one process's was 1.7e-7.
LOSS_RTOL = 1e-5


def probe_callback(probe: Path, signal_at: int = -1) -> str:
    """The override adding tests/fault_probe.py's StepProbe (logs each step; signals itself at ``signal_at``)."""
    return f"callbacks.extra=[{{_target_:fault_probe.StepProbe,path:'{probe}',signal_at:{signal_at}}}]"


def run(cwd: Path, *extra: str, probe: Path | None = None, signal_at: int = -1) -> subprocess.CompletedProcess[str]:
    """``python -m expconf.train`` with BASE and ``extra``; with ``probe``, tests/fault_probe.py logs steps."""
    args = [*BASE, *extra]
    if probe is not None:
        args.append(probe_callback(probe, signal_at))
    env = helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"))
    return helpers.train_process(args, cwd, env, timeout=600)


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


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Per-step losses of one process training STEPS steps of the global batch."""
    cwd = tmp_path_factory.mktemp("single")
    ref = run(cwd, "trainer.devices=1", "data.micro_batch_size=8")
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = step_losses(cwd / "nemo_experiments" / "fsdp" / "v1")
    assert len(want) == STEPS
    return want


def assert_tracks(got: dict[int, float], want: dict[int, float]) -> None:
    assert sorted(got) == sorted(want)
    for step, loss in want.items():
        assert got[step] == pytest.approx(loss, rel=LOSS_RTOL), (step, got[step], loss)


def test_fsdp_two_ranks_preempted_and_resumed_track_one_process(tmp_path: Path, reference: dict[int, float]) -> None:
    sharded = tmp_path / "fsdp"
    sharded.mkdir()
    probe = tmp_path / "probe.log"
    # Rank 0 signals itself after step 2; the ranks agree to stop after step 3 and save '-last',
    # here as one full-state file.
    first = run(
        sharded,
        *FSDP,
        "trainer.fsdp.activation_checkpointing=true",
        "trainer.fsdp.sharded_checkpoint=false",
        probe=probe,
        signal_at=2,
    )
    assert first.returncode == 75, first.stderr[-3000:]
    run_dir = sharded / "nemo_experiments" / "fsdp" / "v1"
    [last] = (run_dir / "checkpoints").glob("*-last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=True)  # plain tensors, no DTensor
    assert saved["global_step"] == 3 and len(saved["expconf_rng"]["per_rank"]) == 2
    assert saved["state_dict"]["model.blocks.1.mlp.0.weight"].shape == (128, 32)  # the whole tensor
    assert len(saved["optimizer_states"][0]["state"]) == len(saved["state_dict"]) - 1  # lm_head is tied

    # Resumed from that file, the run saves sharded folders (the default), asynchronously.
    again = run(sharded, *FSDP, "trainer.fsdp.activation_checkpointing=true", "log.ckpt.async_save=true", probe=probe)
    assert again.returncode == 0, again.stderr[-3000:]
    _, starts, _ = read_log(probe)
    assert starts == [0, 3]
    assert_tracks(step_losses(run_dir), reference)
    logs = sorted(p.name for p in run_dir.glob("nemo_log_*.txt"))
    assert logs == ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"]

    [end] = (run_dir / "checkpoints").glob("*-end.ckpt")
    assert end.is_dir() and Path(f"{end}.meta.json").is_file()
    assert sorted(p.name for p in end.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "expconf_meta.pt"]
    rest = torch.load(end / "expconf_meta.pt", map_location="cpu", weights_only=True)
    assert rest["global_step"] == STEPS and "state_dict" not in rest and "optimizer_states" not in rest
    assert rest["expconf_world"] == {"world_size": 2, "accumulate": 1}


def test_kill9_before_a_folder_is_complete_resumes_from_the_previous_one(
    tmp_path: Path, reference: dict[int, float]
) -> None:
    """kill -9 of both ranks once step 3's folder holds every rank's shard and DCP's metadata but
    not yet its marker: the restart removes that folder and resumes from step 2's."""
    held, probe = tmp_path / "held", tmp_path / "probe.log"
    callbacks = (
        f"callbacks.extra=[{{_target_:fault_probe.StepProbe,path:'{probe}'}},"
        f"{{_target_:fault_probe.HoldBeforeMarker,path:'{held}',step:3}}]"
    )
    env = helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"))
    args = [*BASE, *FSDP, "log.ckpt.every_n_train_steps=1", "log.ckpt.monitor=null", "log.ckpt.save_top_k=-1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "expconf.train", *args, callbacks],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: both ranks are killed at once
    )
    try:
        deadline = time.monotonic() + 300
        while not held.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held.exists(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no hold"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    checkpoints = tmp_path / "nemo_experiments" / "fsdp" / "v1" / "checkpoints"
    [cut] = [p for p in checkpoints.glob("*step=3*.ckpt") if not Path(f"{p}.meta.json").exists()]
    assert {".metadata", "__0_0.distcp", "__1_0.distcp"} <= {p.name for p in cut.iterdir()}

    again = run(tmp_path, *FSDP, probe=probe)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_log(probe)[1] == [0, 2]
    assert_tracks(step_losses(checkpoints.parent), reference)
    assert not cut.exists()  # removed at the start (the second run saves no step-3 checkpoint)
    assert all(Path(f"{p}.meta.json").exists() for p in checkpoints.glob("*.ckpt"))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # FSDP, 2 ranks -> 1: a sharded folder of two shards is resharded onto one rank.
        (FSDP, ["trainer.devices=1", "trainer.strategy=fsdp", "data.micro_batch_size=4"]),
        # DDP, 1 rank -> 2: accumulation 2 on one process becomes 1 on each of two.
        (
            ["trainer.devices=1", "data.micro_batch_size=4"],
            ["trainer.devices=2", "trainer.strategy=ddp", "data.micro_batch_size=4"],
        ),
        # FSDP, 1 rank -> 2: a one-shard folder is split over two ranks.
        (["trainer.devices=1", "trainer.strategy=fsdp", "data.micro_batch_size=4"], FSDP),
        # DDP, 2 ranks -> 1 process.
        (
            ["trainer.devices=2", "trainer.strategy=ddp", "data.micro_batch_size=4"],
            ["trainer.devices=1", "data.micro_batch_size=4"],
        ),
    ],
    ids=["fsdp-2-to-1", "ddp-1-to-2", "fsdp-1-to-2", "ddp-2-to-1"],
)
def test_resume_on_another_world_size_tracks_one_process(
    tmp_path: Path, reference: dict[int, float], before: list[str], after: list[str]
) -> None:
    first = run(tmp_path, *before, "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run(tmp_path, *after, "resume.resume_past_end=true")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming a checkpoint of" in second.stdout + second.stderr
    assert_tracks(step_losses(tmp_path / "nemo_experiments" / "fsdp" / "v1"), reference)


@pytest.mark.s3
def test_sharded_folders_on_s3_resume_on_one_rank(
    s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path, reference: dict[int, float]
) -> None:
    """Two ranks write their shards to SeaweedFS asynchronously; one rank resumes from the folder URL."""
    prefix = f"{s3_bucket}/ckpt"
    s3 = [
        f"log.ckpt.dirpath=s3://{prefix}",
        f"+log.ckpt.storage_options.key={ACCESS_KEY}",
        f"+log.ckpt.storage_options.secret={SECRET_KEY}",
        f"+log.ckpt.storage_options.endpoint_url={s3_server.endpoint}",
    ]
    first = run(tmp_path, *FSDP, *s3, "log.ckpt.async_save=true", "trainer.max_steps=2", "trainer.val_check_interval=2")
    assert first.returncode == 0, first.stderr[-3000:]
    client = s3_server.client()
    [end] = [p for p in client.ls(prefix) if p.endswith("-end.ckpt")]
    assert client.exists(f"{end}.meta.json")
    names = sorted(p.rsplit("/", 1)[-1] for p in client.ls(end))
    assert names == [".metadata", "__0_0.distcp", "__1_0.distcp", "expconf_meta.pt"]
    assert sorted(p.rsplit("/", 1)[-1] for p in client.ls(end.replace("-end.ckpt", "-last.ckpt"))) == names
    marker = CheckpointMeta.from_json(client.cat(f"{end}.meta.json"))
    assert marker.files == {e["name"].rsplit("/", 1)[-1]: e["size"] for e in client.ls(end, detail=True)}

    one_rank = ["trainer.devices=1", "trainer.strategy=fsdp", "data.micro_batch_size=4"]
    second = run(tmp_path, *one_rank, *s3, f"resume.path='s3://{end}'", "resume.resume_if_exists=false")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_tracks(step_losses(tmp_path / "nemo_experiments" / "fsdp" / "v1"), reference)


def test_fsdp_under_torchrun(tmp_path: Path, reference: dict[int, float]) -> None:
    """torchrun starts both ranks; the strategy then starts none and uses torchrun's process group."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, "-m", "expconf.train", *BASE, *FSDP],
        cwd=tmp_path,
        env=helpers.cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "nemo_experiments" / "fsdp" / "v1"
    [end] = (run_dir / "checkpoints").glob("*-end.ckpt")
    assert sorted(p.name for p in end.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert_tracks(step_losses(run_dir), reference)


def srun(cwd: Path, probe: Path, *extra: str, restart: int = 0) -> list[subprocess.CompletedProcess[str]]:
    """Two tasks of one SLURM job step on one node, with the variables srun gives its tasks (no srun here).

    Lightning's SLURMEnvironment takes ranks from them and MASTER_ADDR from SLURM_NODELIST; MASTER_PORT,
    which it would derive from the job id, is set to a free port so parallel tests cannot collide.
    """
    slurm = {
        "SLURM_JOB_ID": "4711",
        "SLURM_JOB_NAME": "expconf",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_RESTART_COUNT": str(restart),
        "MASTER_PORT": str(free_ports(1)[0]),
    }
    env = helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"))
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "NODE_RANK"):
        env.pop(var, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "expconf.train", *BASE, *FSDP, *extra, probe_callback(probe)],
            cwd=cwd,
            env={**env, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_fsdp_under_slurm_task_variables_resumes_after_a_requeue(tmp_path: Path, reference: dict[int, float]) -> None:
    """Each task runs the entry point (srun starts the ranks, expconf none); rank 0's run-dir and resume
    decisions reach rank 1 through ./.expconf/agree, once per launch (SLURM_RESTART_COUNT)."""
    probe = tmp_path / "probe.log"
    first = srun(tmp_path, probe, "trainer.max_steps=2")
    assert [p.returncode for p in first] == [0, 0], first[0].stderr[-2000:] + first[1].stderr[-2000:]
    [run_dir] = (tmp_path / "nemo_experiments" / "fsdp").iterdir()
    [end] = (run_dir / "checkpoints").glob("*-end.ckpt")
    assert sorted(p.name for p in end.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    second = srun(tmp_path, probe, "resume.resume_past_end=true", restart=1)
    assert [p.returncode for p in second] == [0, 0], second[0].stderr[-2000:] + second[1].stderr[-2000:]
    assert read_log(probe)[1] == [0, 2]  # rank 0 started at step 0, then resumed at step 2
    assert [p.name for p in (tmp_path / "nemo_experiments" / "fsdp").iterdir()] == [run_dir.name]
    logs = sorted(p.name for p in run_dir.glob("nemo_log_*.txt"))
    assert logs == ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"]
    assert_tracks(step_losses(run_dir), reference)


def test_fsdp_model_archive_loads_in_one_process(tmp_path: Path) -> None:
    """save_nemo_on_train_end under FSDP: the archive holds the full weights, equal to the consolidated folder's."""
    import expconf
    from expconf.ckpt import main

    proc = run(tmp_path, *FSDP, "trainer.max_steps=2", "log.ckpt.save_nemo_on_train_end=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = tmp_path / "nemo_experiments" / "fsdp" / "v1" / "checkpoints"
    [archive] = checkpoints.glob("*.nemo")
    model = expconf.load_model(str(archive))
    [end] = checkpoints.glob("*-end.ckpt")
    assert main(["consolidate", str(end), str(tmp_path / "full.ckpt")]) == 0
    full = torch.load(tmp_path / "full.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert loaded.keys() == full.keys()
    assert all(torch.equal(loaded[k], full[k]) for k in full)
