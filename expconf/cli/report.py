"""The command line's one exit path: a failure becomes redacted text on stderr and an exit code.

=====  ======================================================================================
code   when
=====  ======================================================================================
2      a user mistake (a config or input error, a refused resume): one ``error:`` line
3      training stopped because its loss became NaN or infinite: one ``error:`` line
1      storage failed mid-run (one ``error:`` line; the previous checkpoint stays resumable),
       or anything else (the traceback)
=====  ======================================================================================

Every printed line goes through :func:`expconf.redact.redact_text` with the job's secrets.
``EXPCONF_DEBUG=1`` turns the exit off: the caller re-raises and Python shows the full traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

from expconf.errors import DEBUG_ENV, USER_ERROR_EXIT_CODE, ConfigError

#: Exit code of a failure that is not the user's mistake (Python's own for an uncaught exception).
FAILURE_EXIT_CODE = 1


def debug() -> bool:
    """Whether ``EXPCONF_DEBUG=1`` asks for tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV) == "1"


def in_chain(e: BaseException, types_: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of one of ``types_`` in ``e``'s cause/context chain, if any."""
    chain: BaseException | None = e
    while chain is not None:
        if isinstance(chain, types_):
            return chain
        chain = chain.__cause__ or chain.__context__
    return None


def write_failure(e: BaseException) -> BaseException | None:
    """The CheckpointWriteError behind ``e`` (storage down mid-run), if any: reported in one line."""
    from expconf.checkpoint.writer import CheckpointWriteError

    return in_chain(e, (CheckpointWriteError,))


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` (or its cause) is a mistake in the user's config or input."""
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from expconf.resume import IncompleteCheckpointError, NotFoundError, TrainingCompletedError

    user = (
        ConfigError,
        HydraException,
        OmegaConfBaseException,
        NotFoundError,
        IncompleteCheckpointError,
        TrainingCompletedError,
        yaml.YAMLError,
    )
    return in_chain(e, user) is not None


def failure_text(e: BaseException, argv: list[str]) -> tuple[int, str]:
    """The exit code and the (unredacted) text that report ``e``; ``argv`` supplies typed values."""
    if is_user_error(e):
        from expconf.cli.messages import one_line

        return USER_ERROR_EXIT_CODE, f"error: {one_line(e, argv)}"
    failure = write_failure(e)
    if failure is not None:
        return FAILURE_EXIT_CODE, f"error: {failure}"
    from expconf.callbacks.finite_loss import DIVERGED_EXIT_CODE, NonFiniteLossError

    diverged = in_chain(e, (NonFiniteLossError,))
    if diverged is not None:
        return DIVERGED_EXIT_CODE, f"error: {diverged}"
    return FAILURE_EXIT_CODE, "".join(traceback.format_exception(e))


def forget_sweep_file(sweep_dirs: set[tuple[str, str]]) -> None:
    """Drop the multirun.yaml Hydra wrote in each sweep dir, and the folders it made if left empty."""
    for root, sweep in sorted(sweep_dirs, key=lambda p: len(p[1]), reverse=True):
        try:
            os.unlink(os.path.join(sweep, "multirun.yaml"))
        except OSError:
            pass
        folder = sweep
        while os.path.commonpath([folder, root]) == root and os.path.isdir(folder):  # Hydra made these
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)


def exit_on_error(e: BaseException, argv: list[str]) -> None:
    """Report ``e`` on stderr and exit; returns only under ``EXPCONF_DEBUG=1`` (the caller re-raises).

    ``argv``: the command line or the job's overrides, for the values named in the error line.
    A sweep (``-m``) stopped by a user mistake leaves no multirun.yaml behind.
    """
    from expconf.config.store import recorded_sweep_dirs
    from expconf.redact import known_secrets, redact_text

    if debug():
        return
    code, text = failure_text(e, argv)
    if code == USER_ERROR_EXIT_CODE and {"-m", "--multirun"} & set(sys.argv[1:]):
        forget_sweep_file(recorded_sweep_dirs())
    print(redact_text(text, known_secrets()), file=sys.stderr, flush=True)
    sys.exit(code)
