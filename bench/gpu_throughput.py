"""Training throughput of a GPT recipe through expconf next to the raw PyTorch loop, in one process.

``python -m bench.gpu_throughput --recipe gpt2_124m --steps 30 --out figures.json`` trains the same
model, data and optimizer twice, interleaved expconf / raw / expconf / raw, and reports, from the
steady-state steps (the first ``--warmup`` steps, compilation included, are left out):
tokens per second and MFU, the model FLOPs (``GPT.flops_per_token()``, the nanoGPT formula)
per second over the card's dense bf16 peak. ``--device cpu`` runs the same code on the CPU with
whatever recipe and overrides are given (MFU is then not reported): the dry run of
``bench/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from expconf.flops import mfu as model_flops_utilization
from expconf.flops import peak_flops
from expconf.train import compose_root


@dataclass
class Figures:
    """One measurement: who ran, on what, and how fast."""

    path: str  # "expconf" or "raw"
    device: str
    steps: int
    median_step_s: float
    tokens_per_s: float
    mfu: float | None
    losses: list[float]


def expconf_steps(root: Any, log_dir: str) -> tuple[list[float], list[float], int]:
    """Train through expconf (build + NeMoLogger + Trainer.fit); step wall times, losses, FLOPs/token."""
    import pytorch_lightning as pl
    import torch

    from expconf.api import train
    from expconf.build import build

    class StepClock(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[float] = []
            self._last_step = 0
            self._t = time.perf_counter()

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == self._last_step:
                return  # inside gradient accumulation
            self._last_step = trainer.global_step
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            self.times.append(now - self._t)
            self._t = now
            loss = trainer.callback_metrics.get("reduced_train_loss")
            self.losses.append(float(loss) if loss is not None else float("nan"))

    root.log.log_dir = log_dir
    built = build(root)
    clock = StepClock()
    built.trainer.callbacks.append(clock)  # type: ignore[attr-defined]
    train(built.model, built.data, built.trainer, built.log, built.resume, exit_on_preemption=False)
    return clock.times, clock.losses, int(built.model.gpt.flops_per_token())  # type: ignore[operator]


def raw_steps(root: Any, device: str, precision: str | None) -> tuple[list[float], list[float], int]:
    """The same model and data through bench/raw_loop.py."""
    from bench.raw_loop import raw_train

    r = raw_train(
        root.model,
        root.data,
        root.optim,
        root.trainer.max_steps,
        seed=root.seed,
        device=device,
        precision=precision,
        grad_clip=root.trainer.gradient_clip_val,
    )
    return r.step_times, r.losses, r.flops_per_token


def summarize(
    path: str, device: str, measured: tuple[list[float], list[float], int], warmup: int, root: Any, peak: float | None
) -> Figures:
    """Tokens/s and MFU from the steps after ``warmup``."""
    times, losses, flops_per_token = measured
    steady = times[warmup:] or times
    med = statistics.median(steady)
    tokens = root.data.global_batch_size * root.data.seq_length
    tps = tokens / med
    mfu = model_flops_utilization(flops_per_token, tps, peak) if peak else None
    return Figures(path, device, len(steady), med, tps, mfu, losses)


def main(argv: list[str] | None = None) -> None:
    """Measure and write the figures (JSON) to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="gpt2_124m")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out (compilation, allocator)")
    ap.add_argument("--repeats", type=int, default=2, help="expconf/raw pairs, interleaved")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak when the card is not known")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("overrides", nargs="*", help="extra config overrides, e.g. data.micro_batch_size=8")
    args = ap.parse_args(argv)

    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    precision = "bf16-mixed" if cuda else None
    overrides = [
        f"trainer.accelerator={'gpu' if cuda else 'cpu'}",
        "trainer.devices=1",
        f"trainer.max_steps={args.steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        "log.tensorboard.enabled=false",
        *([f"trainer.precision={precision}"] if precision else []),
        *args.overrides,
    ]
    peak = peak_flops(device_name, args.peak_tflops) if cuda else None
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="expconf-throughput-") as tmp:
        for i in range(args.repeats):
            root = compose_root([f"recipe={args.recipe}", *overrides])
            measured = expconf_steps(root, f"{tmp}/{i}")
            results.append(summarize("expconf", device_name, measured, args.warmup, root, peak))
            root = compose_root([f"recipe={args.recipe}", *overrides])
            measured = raw_steps(root, args.device, precision)
            results.append(summarize("raw", device_name, measured, args.warmup, root, peak))
    best = {p: max((r for r in results if r.path == p), key=lambda r: r.tokens_per_s) for p in ("expconf", "raw")}
    report = {
        "device": device_name,
        "recipe": args.recipe,
        "overrides": overrides,
        "peak_flops": peak,
        "runs": [asdict(r) for r in results],
        "expconf_over_raw_tokens_per_s": best["expconf"].tokens_per_s / best["raw"].tokens_per_s,
        "torch": torch.__version__,
    }
    args.out.write_text(json.dumps(report, indent=1))
    for p, r in best.items():
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        print(f"{p:8s} {device_name}: {r.tokens_per_s:,.0f} tokens/s  MFU {mfu}  (median step {r.median_step_s:.4f}s)")
    print(f"expconf / raw tokens/s: {report['expconf_over_raw_tokens_per_s']:.3f}  -> {args.out}")


if __name__ == "__main__":
    main()
