"""The GPT recipe in a bare ``pytorch_lightning.Trainer`` script, without expconf: a second
baseline for the time to the first step, which pays Lightning's own import and setup cost.

``python -m bench.bare_lightning JOB.json OUT.json`` takes the raw loop's job file and writes a
StepLog record (first-step time, losses) to OUT.json.
"""

from __future__ import annotations

import json
import sys

import pytorch_lightning as pl
import torch

from bench.steplog import StepLog
from expconf.batch import BatchSizes
from expconf.config.data import DataConfig
from expconf.config.model import GPTModelConfig
from expconf.config.optim import OptimConfig
from expconf.data import TokenDataModule
from expconf.recipes.gpt import GPTModule


def main(argv: list[str] | None = None) -> int:
    """Train the job's steps with a plain Trainer and record them."""
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(open(args[0]).read())
    torch.set_num_threads(1)
    pl.seed_everything(int(job["seed"]), verbose=False)
    data_cfg = DataConfig(**job["data"])
    data = TokenDataModule(data_cfg, seed=int(job["seed"]))
    data.prepare_data()
    assert data.vocab_size is not None
    model = GPTModule(
        GPTModelConfig(**job["model"]),
        vocab_size=data.vocab_size,
        seq_length=data_cfg.seq_length,
        optim=OptimConfig(**job["optim"]),
        global_batch_size=data_cfg.global_batch_size,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=int(job["steps"]),
        accumulate_grad_batches=BatchSizes.of(data_cfg).accumulate,
        gradient_clip_val=job["grad_clip"],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[StepLog(args[1])],
    )
    trainer.fit(model, datamodule=data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
