"""``trainer.fsdp``: how ``trainer.strategy=fsdp`` (FSDP2) shards the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expconf.config.fields import check_choice, doc

DTYPES = (None, "fp32", "bf16", "fp16")


@dataclass
class FSDPConfig:
    """Options of expconf's FSDP2 strategy (``torch.distributed.fsdp.fully_shard``)."""

    block_class: Optional[str] = doc(
        None, "class name of the blocks sharded one by one (null: every member of an nn.ModuleList)"
    )
    param_dtype: Optional[str] = doc(
        None, "dtype of gathered parameters in forward/backward: fp32, bf16, fp16 (null: as stored)"
    )
    reduce_dtype: Optional[str] = doc(None, "dtype of the gradient reduce-scatter (null: param_dtype)")
    activation_checkpointing: bool = doc(
        False, "recompute each block's activations in backward (less memory, one more forward pass per block)"
    )
    sharded_checkpoint: bool = doc(
        True, "checkpoints are DCP folders, each rank writing its shard; false: one full-state file written by rank 0"
    )
    reshard_after_forward: bool = doc(
        True, "free gathered parameters after forward (ZeRO-3); false keeps them (ZeRO-2)"
    )
    meta_init: bool = doc(
        True,
        "build the model on the meta device and initialise only each rank's shards, to the values a normal "
        "build gets; false: every rank builds the whole model first",
    )

    def validate(self, prefix: str = "trainer.fsdp") -> None:
        """Check choices; raises ConfigError."""
        check_choice(f"{prefix}.param_dtype", self.param_dtype, DTYPES)
        check_choice(f"{prefix}.reduce_dtype", self.reduce_dtype, DTYPES)
