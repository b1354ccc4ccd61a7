"""A hand-written PyTorch training loop of the GPT recipe: the baseline every speed row compares with.

Same model, data order, optimizer, schedule, gradient accumulation and clipping as
``python -m expconf.train +recipe=gpt``, so with the same seed the per-step losses are
bitwise equal on the CPU.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from expconf.batch import BatchSizes
from expconf.config.data import DataConfig
from expconf.config.model import GPTModelConfig
from expconf.config.optim import OptimConfig
from expconf.recipes.gpt_model import GPT, build_optimizer, lr_lambda, padded_vocab
from expconf.tokens import TokenWindows, make_loader, prepare_tokens, train_sampler


@dataclass
class RawResult:
    """Per-optimizer-step losses and wall times, plus the time to the first step.

    A step's loss is the mean over its ``k`` micro-batches computed as Lightning's backward sees
    it: the float32 sum, in order, of each ``loss / k`` (bench/steplog.py records the same).
    """

    losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    first_step_s: float = 0.0
    first_step_unix: float = 0.0
    tokens_per_step: int = 0
    flops_per_token: int = 0


def seed_all(seed: int) -> None:
    """What Lightning's seed_everything seeds."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def raw_train(
    model_cfg: GPTModelConfig,
    data_cfg: DataConfig,
    optim_cfg: OptimConfig,
    steps: int,
    *,
    seed: int = 1234,
    device: str = "cpu",
    precision: str | None = None,
    grad_clip: float | None = 1.0,
    world_size: int = 1,
) -> RawResult:
    """Train ``steps`` optimizer steps; ``precision='bf16-mixed'`` autocasts on CUDA."""
    t_start = time.perf_counter()
    seed_all(seed)
    train_path, _, token_vocab = prepare_tokens(data_cfg)
    vocab = model_cfg.vocab_size or padded_vocab(token_vocab)
    gpt = GPT(model_cfg, vocab, data_cfg.seq_length)
    model = gpt.to(device)
    opt = build_optimizer(model, optim_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, optim_cfg, steps))
    params = [p for group in opt.param_groups for p in group["params"]]
    step_model = torch.compile(model) if model_cfg.compile else model
    dataset = TokenWindows(train_path, data_cfg.seq_length, token_vocab)
    sampler = train_sampler(data_cfg, len(dataset), seed, 0, world_size)
    loader = make_loader(data_cfg, dataset, sampler, seed)
    accumulate = BatchSizes.of(data_cfg, world_size).accumulate
    autocast = precision == "bf16-mixed" and device.startswith("cuda")
    result = RawResult(
        tokens_per_step=data_cfg.global_batch_size * data_cfg.seq_length, flops_per_token=gpt.flops_per_token()
    )
    model.train()
    epoch = 0
    it = iter(loader)
    t_step = time.perf_counter()
    c_step = time.process_time()
    while len(result.losses) < steps:
        total = torch.zeros((), device=device)
        for _ in range(accumulate):
            try:
                x, y = next(it)
            except StopIteration:
                epoch += 1
                sampler.set_epoch(epoch)
                it = iter(loader)
                x, y = next(it)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = step_model(x, y)
            scaled = loss / accumulate  # as Lightning normalises the loss before backward
            scaled.backward()
            total += scaled.detach()
        if grad_clip:
            # In the optimizer's parameter order, as Lightning clips: the norm's summation order matters.
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        result.losses.append(float(total))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        if not result.step_times:
            result.first_step_s = now - t_start
            result.first_step_unix = time.time()
        result.step_times.append(now - t_step)
        cpu = time.process_time()
        result.cpu_times.append(cpu - c_step)
        t_step, c_step = now, cpu
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.raw_loop JOB.json OUT.json``: the raw loop as its own process.

    JOB.json holds ``model``, ``data`` and ``optim`` (the dataclasses' fields), ``steps``,
    ``seed`` and ``grad_clip``; OUT.json gets losses, step-end times and the first step's time.
    """
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    job = json.loads(open(args[0]).read())
    torch.set_num_threads(1)
    res = raw_train(
        GPTModelConfig(**job["model"]),
        DataConfig(**job["data"]),
        OptimConfig(**job["optim"]),
        int(job["steps"]),
        seed=int(job["seed"]),
        grad_clip=job["grad_clip"],
    )
    with open(args[1], "w") as f:
        json.dump(
            {
                "losses": res.losses,
                "step_times": res.step_times,
                "cpu_times": res.cpu_times,
                "first_step_unix": res.first_step_unix,
            },
            f,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
