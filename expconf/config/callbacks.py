"""``callbacks``: TimingCallback, PreemptionCallback and extra user callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expconf.config.fields import doc, require
from expconf.config.limits import check_catchable_signal


@dataclass
class CallbacksConfig:
    """Which of expconf's callbacks run; both are on by default."""

    timing: bool = doc(True, "TimingCallback: log 'train_step_timing in s' and tokens per second")
    preemption: bool = doc(True, "PreemptionCallback: checkpoint and exit with the requeue code on a signal")
    preemption_signal: str = doc("SIGTERM", "signal that means 'preempted' (SIGUSR1 under SLURM)")
    finite_loss: bool = doc(True, "FiniteLossCallback: stop with exit code 3 when the training loss is NaN or infinite")
    progress_bar: str = doc(
        "steps",
        "steps: optimizer steps of max_steps with tokens/s and time left; rich or tqdm: Lightning's bars",
    )
    extra: list[Any] = doc(help="more callbacks as {_target_: ..., ...}; targets must be allow-listed", factory=list)

    def validate(self) -> None:
        """Check the signal name and progress bar; raises ConfigError."""
        check_catchable_signal("callbacks.preemption_signal", self.preemption_signal)
        require(
            self.progress_bar in ("steps", "rich", "tqdm"),
            "callbacks.progress_bar",
            self.progress_bar,
            "one of 'steps', 'rich', 'tqdm'",
        )
        for i, cb in enumerate(self.extra):
            require(
                isinstance(cb, dict) and "_target_" in cb,
                f"callbacks.extra[{i}]",
                cb,
                "a mapping with a _target_ key",
            )
            from expconf import targets

            targets.check(str(cb["_target_"]), f"callbacks.extra[{i}]._target_")
