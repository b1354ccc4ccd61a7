"""``python -m expconf.runs``: what a run dir holds and what resume would do with it.

``show RUN_DIR`` lists the checkpoint candidates, the incomplete ones, and the checkpoint
``resume.resume_if_exists`` would pick and why (the decision is :func:`expconf.resume.decide`
itself, not a copy). ``ls [LOG_DIR]`` prints a table of the runs under a log dir (default
./nemo_experiments): name, version, run or sweep job, state, last step, best metric, overrides. Nothing heavy is imported: no torch, no Lightning.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from expconf import rundir
from expconf.checkpoint.meta import CheckpointMeta, Listing, scan
from expconf.resume import IncompleteCheckpointError, TrainingCompletedError, decide
from expconf.storage import Storage


@dataclass
class RunInfo:
    """Where a run's checkpoints are and how its resume is configured (from its config.yaml)."""

    run_dir: Path
    ckpt_dir: str
    monitor: str | None
    mode: str
    resume_past_end: bool


class RunDirError(ValueError):
    """A run dir's file that ``runs`` reads is malformed; the message is one line naming it."""


def run_info(run_dir: Path) -> RunInfo:
    """Read the run's saved config; defaults when it has none. RunDirError when it is malformed."""
    cfg: Any = {}
    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            why = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
            raise RunDirError(f"{path}: not readable as YAML ({why})") from None
    root = _mapping(path, cfg, "")
    resume = _mapping(path, root.get("resume"), "resume")
    ckpt = _mapping(path, _mapping(path, root.get("log"), "log").get("ckpt"), "log.ckpt")
    return RunInfo(
        run_dir=run_dir,
        ckpt_dir=rundir.resume_dir(run_dir, ckpt.get("dirpath"), resume.get("dirpath")),
        monitor=ckpt.get("monitor", "val_loss"),
        mode=ckpt.get("mode", "min"),
        resume_past_end=bool(resume.get("resume_past_end", False)),
    )


def _mapping(path: Path, value: Any, key: str) -> dict[str, Any]:
    """``value`` (the config node ``key``) as a mapping: {} when absent, RunDirError when not a mapping."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: {key or 'the file'} is not a mapping (found {type(value).__name__})")
    return value


def _listing(storage: Storage) -> Listing:
    """The folder's listing; empty when a local folder does not exist (yet)."""
    if not storage.remote and not Path(storage.url).is_dir():
        return Listing({}, [])
    return scan(storage)


def _describe(meta: CheckpointMeta) -> str:
    score = f" {meta.monitor}={meta.score:.4g}" if meta.score is not None and meta.monitor else ""
    return f"step={meta.global_step} epoch={meta.epoch} kind={meta.kind}{score}"


def show(run_dir: Path, out: Any = None) -> int:
    """Print candidates, incomplete checkpoints and resume's choice; 0, or 1 when resume would fail.

    A completed run (an '-end' checkpoint) is 0: resume would start nothing, which is no error.
    """
    out = out or sys.stdout
    info = run_info(run_dir)
    storage = Storage(info.ckpt_dir)
    print(f"run dir:     {run_dir}", file=out)
    print(f"checkpoints: {storage.url}", file=out)
    listing = _listing(storage)
    found = {**listing.foreign, **listing.complete}
    candidates = {n: m for n, m in found.items() if m.kind in ("last", "end")}
    print("candidates ('-last' / '-end', complete):", file=out)
    for name, meta in sorted(candidates.items(), key=lambda kv: (kv[1].global_step, kv[1].created)):
        foreign = "  (another tool's: no marker, step read from inside it)" if name not in listing.complete else ""
        print(f"  {name}  {_describe(meta)}{foreign}", file=out)
    if not candidates:
        print("  (none)", file=out)
    others = {n: m for n, m in listing.complete.items() if n not in candidates}
    if others:
        print("other complete checkpoints (top-k; resumed when no '-last' verifies):", file=out)
        for name, meta in sorted(others.items(), key=lambda kv: kv[1].global_step):
            print(f"  {name}  {_describe(meta)}", file=out)
    print("incomplete (no completion marker; never loaded, removed at the next start):", file=out)
    for name in listing.incomplete:
        print(f"  {name}", file=out)
    if not listing.incomplete:
        print("  (none)", file=out)
    try:
        decision = decide(storage, info.resume_past_end)
    except TrainingCompletedError as e:  # a finished run is a normal state, not a failure of `show`
        print(f"resume would pick: nothing: {e}", file=out)
        return 0
    except IncompleteCheckpointError as e:
        print(f"resume would fail: {e}", file=out)
        return 1
    if decision.chosen is None:
        print("resume would pick: nothing (no complete checkpoint): the run starts from step 0", file=out)
    else:
        chosen = decision.chosen
        print(f"resume would pick: {storage.path(chosen.name)}", file=out)
        print(f"  at step {chosen.global_step}, because: {decision.reason}", file=out)
    for rejected in decision.rejected:
        print(f"  passed over, damaged: {rejected}", file=out)
    return 0


def find_runs(log_dir: Path) -> list[Path]:
    """Run dirs under ``log_dir``: folders with a cmd-args.log (not the per-restart run_N copies)."""
    return sorted(p.parent for p in log_dir.rglob("cmd-args.log") if not p.parent.name.startswith("run_"))


def _best(metas: Iterable[CheckpointMeta], monitor: str | None, mode: str) -> CheckpointMeta | None:
    # Top-k entries first: '-last' / '-end' copies carry the same score under another name.
    metas = sorted(metas, key=lambda m: m.kind != "topk")
    scored = [m for m in metas if m.score is not None and not math.isnan(m.score) and m.monitor == monitor]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda m: m.score if m.score is not None else 0.0)


#: Columns of ``runs ls``; OVERRIDES (the command-line values of the run) comes last, unpadded.
COLUMNS = ("NAME", "VERSION", "KIND", "STATE", "STEP", "BEST", "OVERRIDES")


def is_sweep_job(run_dir: Path) -> bool:
    """True when the run was one job of a ``-m`` sweep (its cmd-args.log has the flag)."""
    words = (run_dir / "cmd-args.log").read_text().split()[1:]  # [0] is the program
    return "-m" in words or "--multirun" in words


def run_row(log_dir: Path, run_dir: Path) -> tuple[str, ...]:
    """One ``runs ls`` row; raises on a run whose files cannot be read."""
    parts = run_dir.relative_to(log_dir).parts
    name, version = parts[0], "/".join(parts[1:]) or "-"
    kind = "sweep job" if is_sweep_job(run_dir) else "run"
    info = run_info(run_dir)
    metas = list(_listing(Storage(info.ckpt_dir)).complete.values())
    last_step = max((m.global_step for m in metas), default=None)
    best = _best(metas, info.monitor, info.mode)
    state = (
        "completed"
        if any(m.kind == "end" for m in metas)
        else ("resumable" if any(m.kind == "last" for m in metas) else "no checkpoint")
    )
    best_text = f"{info.monitor}={best.score:.4g} (step {best.global_step})" if best and best.score is not None else "-"
    overrides_file = run_dir / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    if not isinstance(overrides, list):
        raise ValueError("overrides.yaml is not a list")
    step = str(last_step) if last_step is not None else "-"
    return name, version, kind, state, step, best_text, " ".join(str(o) for o in overrides)


def ls(log_dir: Path, out: Any = None) -> int:
    """Print a table of the runs under ``log_dir``; 1 when there are none or one could not be read."""
    out = out or sys.stdout
    runs = find_runs(log_dir)
    if not runs:
        print(f"no runs under {log_dir}", file=out)
        return 1
    rows: list[tuple[str, ...]] = []
    unreadable = 0
    for run_dir in runs:
        try:
            rows.append(run_row(log_dir, run_dir))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as e:
            unreadable += 1
            parts = run_dir.relative_to(log_dir).parts
            # The row names the run: paths inside it are shown relative, so the reason fits the cut.
            why = " ".join(str(e).replace(f"{run_dir}/", "").split())[:120]
            rows.append((parts[0], "/".join(parts[1:]) or "-", "-", f"unreadable: {type(e).__name__}: {why}"))
    # A row's last cell is never padded and sets no width (an unreadable row ends early).
    widths = [max((len(r[i]) for r in [COLUMNS, *rows] if i < len(r) - 1), default=0) for i in range(len(COLUMNS))]
    for row in [COLUMNS, *rows]:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        print("  ".join(cells).rstrip(), file=out)
    return 1 if unreadable else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m expconf.runs`` and the ``expconf-runs`` script."""
    p = argparse.ArgumentParser(prog="python -m expconf.runs", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="candidates, incomplete checkpoints and what resume would pick")
    s.add_argument("run_dir", type=Path)
    listing = sub.add_parser("ls", help="a table of runs: state, last step, best metric, overrides")
    listing.add_argument("log_dir", type=Path, nargs="?", default=Path(rundir.DEFAULT_LOG_DIR))
    args = p.parse_args(argv)
    if args.command == "show":
        if not args.run_dir.is_dir():
            print(f"error: run dir {args.run_dir} does not exist", file=sys.stderr)
            sys.exit(2)
        try:
            sys.exit(show(args.run_dir))
        except RunDirError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    if not args.log_dir.is_dir():
        print(f"error: log dir {args.log_dir} does not exist", file=sys.stderr)
        sys.exit(2)
    sys.exit(ls(args.log_dir))


if __name__ == "__main__":
    main()
