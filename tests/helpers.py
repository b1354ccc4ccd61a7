"""Shared test helpers: running the CLI as a real process, tiny model overrides, reading scalars."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]

#: A model small enough that a few steps take about a second on one CPU core.
TINY = [
    "+recipe=gpt",
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=32",
    "data.seq_length=32",
    "data.micro_batch_size=4",
    "data.global_batch_size=8",
    "data.corpus_megabytes=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
]


#: Intra-op threads of every CLI run the tests start: runs whose floats are compared bit for bit
#: must reduce in the same order, and a CPU reduction's order depends on the thread count.
CLI_THREADS = 1


@contextmanager
def intra_op_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` torch intra-op threads (restored after); yields the count in force."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def cli_env(tmp: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment a CLI run gets: offline W&B, CLI_THREADS threads, shared token cache, no stale expconf vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCONF_", "WANDB_", "PL_"))}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        OMP_NUM_THREADS=str(CLI_THREADS),
        MKL_NUM_THREADS=str(CLI_THREADS),
        PYTHONUNBUFFERED="1",
        EXPCONF_CACHE=os.environ.get("EXPCONF_TEST_CACHE", str(REPO / ".pytest_expconf_cache")),
    )
    env.update(extra)
    return env


def shell_signals() -> None:
    """``preexec_fn`` for a child that must see signals as under a shell: pytest-xdist workers
    ignore SIGINT, and an ignored signal stays ignored in every process they start."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, module: str = "expconf.train", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m expconf.train ARGS`` in ``cwd`` with :func:`cli_env` plus ``env``."""
    return train_process(args, cwd, cli_env(**env), timeout, module)


def train_process(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300, module: str = "expconf.train"
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m expconf.train ARGS`` in ``cwd`` with exactly ``env``; the finished process."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=shell_signals,
    )


def proc_environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with ({} once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def run_dirs(root: Path) -> list[Path]:
    """Run dirs (folders holding cmd-args.log) under ``root``."""
    return sorted(p.parent for p in root.rglob("cmd-args.log") if "run_" not in p.parent.name)


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a TensorBoard scalar written under ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: list[tuple[int, float]] = []
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            out += [(e.step, e.value) for e in acc.Scalars(tag)]
        break
    return sorted(set(out))


def compose_and_validate(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``expconf.train.main(args)`` up to the builder and return the validated RootConfig.

    The check that this machine has the configured accelerator is skipped.
    """
    import expconf.build
    import expconf.hardware
    from expconf.train import main as train_main

    seen: dict[str, Any] = {}

    class Done:
        def summary(self) -> str:
            return "validated"

    def fake_run(root: Any, **_: Any) -> Done:
        seen["root"] = root
        return Done()

    monkeypatch.setattr(expconf.build, "run", fake_run)
    # the accelerator check is about this machine, not the config: a migrated GPU config is valid here too
    monkeypatch.setattr(expconf.hardware, "check_accelerator", lambda trainer: None)
    monkeypatch.setattr(sys, "argv", ["expconf.train"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    train_main(args)
    return seen["root"]


def quiet_trainer(
    root: Path | str | None = None, callbacks: list[pl.Callback] | None = None, **kwargs: Any
) -> pl.Trainer:
    """A CPU ``pl.Trainer`` that prints nothing: no logger, progress bar or model summary.

    ``root`` is its ``default_root_dir``; ``kwargs`` add to or replace any of these settings.
    """
    import pytorch_lightning as pl

    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_progress_bar", False)
    kwargs.setdefault("enable_model_summary", False)
    kwargs.setdefault("accelerator", "cpu")
    if root is not None:
        kwargs["default_root_dir"] = str(root)
    return pl.Trainer(callbacks=callbacks or [], **kwargs)


def make_trainer(
    root: Path | str | None, max_steps: int, callbacks: list[pl.Callback] | None = None, **kwargs: Any
) -> pl.Trainer:
    """A :func:`quiet_trainer` for ``max_steps`` that validates one batch every 2 steps, no sanity check."""
    kwargs.setdefault("val_check_interval", 2)
    kwargs.setdefault("limit_val_batches", 1)
    kwargs.setdefault("num_sanity_val_steps", 0)
    return quiet_trainer(root, callbacks, max_steps=max_steps, **kwargs)
