"""``PreemptionCallback``: on a signal, finish the step, checkpoint, stop every rank, exit to be requeued."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from expconf import early_signal
from expconf.config.limits import check_catchable_signal
from expconf.lightning_internals import skip_next_validation, take_over_sigterm

log = logging.getLogger(__name__)

#: Exit status after a preemption checkpoint: EX_TEMPFAIL from sysexits.h, "try again later".
REQUEUE_EXIT_CODE = 75


class PreemptionCallback(Callback):
    """Turns a signal (SIGTERM by default; SIGUSR1 under SLURM) into a clean, resumable stop.

    On the signal the current optimizer step finishes, a ``-last`` checkpoint is written (and
    pending async saves are awaited), all ranks stop together, and the run exits with
    :data:`REQUEUE_EXIT_CODE`: in a plain Trainer the process exits when the Trainer tears down
    after the stop (``exit_on_preemption``); under ``expconf.train`` once ``fit`` has returned. A second signal (more than a second after the first) is
    re-delivered with the default action, so the process terminates: it is never swallowed.

    :meth:`arm` (called by ``expconf.train`` before it sets the run up, at the latest in
    ``setup``) installs the handler before fit, so a signal that arrives earlier (recorded by
    :mod:`expconf.early_signal` while the run is built) is honoured at the end of the first step.
    With ``keep_after_signal`` (set by ``expconf.train``, which exits once fit returns) the
    handler stays installed after a signal until the process exits, so copies of it that arrive
    while the run exits still count as one; otherwise the earlier handler is back after fit.
    """

    def __init__(self, sig: int | str | None = None, exit_on_preemption: bool = True) -> None:
        if sig is None:
            sig = signal.SIGTERM  # NeMo's default
        self.sig = signal.Signals[sig] if isinstance(sig, str) else signal.Signals(sig)
        check_catchable_signal("PreemptionCallback.sig", self.sig.name)
        self.exit_on_preemption = exit_on_preemption
        self.received = False
        self.preempted = False
        self._received_at = 0.0
        self._previous: Any = None
        self._installed = False
        self._outer: Any = None  # the handler before arm()
        self._armed = False
        self.keep_after_signal = False
        self._last_step = -1
        self._launcher: Any = None

    @property
    def interrupted(self) -> bool:
        """Whether the signal arrived (NeMo's name)."""
        return self.received

    # -- the handler ----------------------------------------------------------------------------
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self._armed and not self._installed and not self.received:
            # Left behind by a run that ended without a signal (Lightning's teardown may put this
            # handler back): act as the handler that was there before.
            signal.signal(signum, self._outer if self._outer is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.received and now - self._received_at > early_signal.DUPLICATE_WINDOW_S:
            # A second request: stop waiting. The default action (terminate) is restored and the
            # signal re-delivered, so neither this handler nor Lightning's can swallow it.
            log.warning("second %s: terminating without waiting for the checkpoint", signal.Signals(signum).name)
            self.uninstall()
            kill_children = getattr(self._launcher, "kill", None)
            if callable(kill_children):
                # Ranks this process launched would take the signal as a first request and then
                # fail in a collective with this rank gone: they go down with it, at once.
                kill_children(signal.SIGKILL)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not self.received:
            log.warning(
                "received %s: finishing this step, then checkpointing and exiting with %d",
                signal.Signals(signum).name,
                REQUEUE_EXIT_CODE,
            )
            self.received = True
            self._received_at = now

    def arm(self) -> None:
        """Install the handler before fit (idempotent); :meth:`disarm` puts the earlier one back."""
        if self._armed:
            return
        self._outer = signal.signal(self.sig, self._handler)
        self._armed = True
        early = early_signal.take(self.sig)  # the signal as recorded while the run was built
        if early is not None:
            self._outer, received_at = early
            if received_at is not None and not self.received:
                log.warning("received %s before training: checkpointing after the first step", self.sig.name)
                self.received, self._received_at = True, received_at

    def disarm(self) -> None:
        """Put back the handler found by :meth:`arm` (kept after a signal with ``keep_after_signal``)."""
        if self._armed and not self._keeps():
            signal.signal(self.sig, self._outer if self._outer is not None else signal.SIG_DFL)
            self._armed = False

    def _keeps(self) -> bool:
        return self.received and self.keep_after_signal

    def install(self) -> None:
        """Install the handler (Lightning installs its own at fit start, so this runs after)."""
        if self._installed:
            return
        self._previous = signal.signal(self.sig, self._handler)
        self._installed = True

    def uninstall(self) -> None:
        """Put back the handler that was there before (kept after a signal with ``keep_after_signal``)."""
        if self._installed:
            kept = self._handler if self._keeps() else self._previous
            signal.signal(self.sig, kept if kept is not None else signal.SIG_DFL)
            self._installed = False

    # -- Lightning hooks ------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.arm()  # before Lightning's own handler, which then keeps it as the one to restore

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        self._launcher = getattr(trainer.strategy, "launcher", None)
        self.install()
        # A SIGTERM during setup, restore or sanity checking reached Lightning's handler, which
        # would raise after the first step and lose it: take the request over instead.
        if self.sig == signal.SIGTERM and take_over_sigterm(trainer):
            self.received = True
            self._received_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_step:
            return  # mid gradient-accumulation: the step is not finished yet
        self._last_step = trainer.global_step
        stop = self.received
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if not stop:
            return
        self.preempted = True
        ckpt: Any = trainer.checkpoint_callback
        if ckpt is not None and hasattr(ckpt, "save"):
            ckpt.interrupted = True
            ckpt.save(trainer, force_last=True)
            ckpt.wait()
        elif ckpt is not None:
            trainer.save_checkpoint(os.path.join(trainer.default_root_dir, "checkpoints", "preempted-last.ckpt"))
        trainer.should_stop = True
        # Lightning validates before honouring should_stop; a preempted job has no time for it.
        skip_next_validation(trainer)
        log.warning("preemption checkpoint written at step %d; stopping", trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.uninstall()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.uninstall()
        self.disarm()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The checkpoint is durable (awaited in on_train_batch_end) and every rank stopped at the
        # same step, so each rank ends here with the requeue code, as NeMo's callback ends its process.
        if stage == "fit":
            self.disarm()
        if stage == "fit" and self.preempted and self.exit_on_preemption:
            if trainer.is_global_zero:
                requeue_slurm_job()
            log.warning("preempted: exiting with %d (requeue)", REQUEUE_EXIT_CODE)
            sys.exit(REQUEUE_EXIT_CODE)

    def exit_code(self) -> int:
        """The exit status the run should end with (0 when not preempted)."""
        return REQUEUE_EXIT_CODE if self.preempted else 0


def requeue_slurm_job() -> bool:
    """Ask SLURM to requeue this job (``scontrol requeue``) when running under SLURM; True on success."""
    import shutil
    import subprocess

    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = (
        f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        if job and "SLURM_ARRAY_TASK_ID" in os.environ
        else (os.environ.get("SLURM_JOB_ID"))
    )
    if not job_id or shutil.which("scontrol") is None:
        return False
    result = subprocess.run(["scontrol", "requeue", job_id], check=False)
    return result.returncode == 0
