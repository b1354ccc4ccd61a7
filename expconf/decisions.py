"""Decisions (run dir, resume checkpoint) that belong to one run, not to the whole process.

A decision is exported as an environment variable so that the ranks a run launches (Lightning's
or expconf's DDP children, relaunched scripts) inherit it. This process remembers which values
it exported itself: a later run in the same process decides again instead of inheriting its own
earlier decision, and the run's trainer removes the variable when it is torn down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pytorch_lightning.callbacks import Callback

from expconf import launch

#: Values this process decided and exported, by variable.
_own: dict[str, str] = {}


def inherited(var: str) -> str | None:
    """The decision a launcher (or the launching process) handed to this one, if any."""
    value = os.environ.get(var)
    if value is None:
        return None
    if _own.get(var) == value and (launch.global_rank() == 0 or launch.launched_externally()):
        return None  # this process's own decision for an earlier run
    return value


def agree(var: str, decide: Callable[[], str]) -> str:
    """The value of a decision for this run, shared with every rank (see :func:`expconf.launch.agree`)."""
    value = inherited(var)
    if value is not None:
        return value
    os.environ.pop(var, None)
    value = launch.agree(var, decide)
    _own[var] = value
    return value


def release(var: str) -> None:
    """Forget this process's decision for ``var`` (a value a launcher handed in stays)."""
    value = _own.pop(var, None)
    if value is not None and os.environ.get(var) == value:
        del os.environ[var]


class DecisionScope(Callback):
    """Removes the decisions a run exported once its trainer is torn down (or fails)."""

    def __init__(self) -> None:
        self.vars: set[str] = set()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.release()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.release()

    def release(self) -> None:
        """Forget the decisions of this scope."""
        for var in self.vars:
            release(var)
        self.vars.clear()


def scope_of(trainer: Any, var: str) -> None:
    """Record on ``trainer`` that its run owns the decision in ``var``."""
    callbacks = trainer.callbacks
    scope = next((c for c in callbacks if isinstance(c, DecisionScope)), None)
    if scope is None:
        scope = DecisionScope()
        callbacks.append(scope)
    scope.vars.add(var)
