"""``--help`` and ``--version`` of ``expconf-train``: expconf's own page instead of Hydra's stock one."""

from __future__ import annotations

import os
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from expconf.cli.args import DEFAULTS_GROUPS, config_dirs, group_options

#: The overrides people use most, with what each does (shown by ``--help``, run by tests/integration).
COMMON_OVERRIDES = (
    ("trainer.max_steps=1000 optim.lr=1e-3", "train longer, with another learning rate"),
    (
        "log.name=exp1 resume.resume_if_exists=true resume.resume_ignore_no_checkpoint=true",
        "a restartable run: resumes when a checkpoint exists, starts fresh otherwise",
    ),
    ("log.ckpt.save_top_k=5 log.ckpt.dirpath=s3://bucket/ckpts", "keep 5 checkpoints, on S3"),
    ("log.wandb.project=myproj", "also log to Weights & Biases"),
    ("trainer.devices=2 trainer.strategy=ddp", "data parallel on 2 devices (expconf launches the ranks)"),
    ("-m optim.lr=1e-3,2e-3", "a sweep: one run per value"),
)


def prog() -> str:
    """How the user started the program, for usage lines."""
    name = os.path.basename(sys.argv[0])
    return name if name.startswith("expconf-") else "python -m expconf.train"


def version_text() -> str:
    """``expconf 0.1.0 (Hydra 1.3.8, PyTorch Lightning ..., torch ..., Python ...)``."""
    parts = []
    for dist, label in (("hydra-core", "Hydra"), ("pytorch-lightning", "PyTorch Lightning"), ("torch", "torch")):
        try:
            parts.append(f"{label} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    parts.append(f"Python {sys.version.split()[0]}")
    return f"expconf {_own_version()} ({', '.join(parts)})"


def _own_version() -> str:
    try:
        return metadata.version("expconf")
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        return "unknown (not installed)"


def _option_file(group: str, name: str, argv: list[str]) -> Any:
    folders: list[Any] = [Path(d) / group for d in config_dirs(argv)]
    folders.append(resources.files("expconf.conf").joinpath(group))
    for folder in folders:
        path = folder.joinpath(f"{name}.yaml")
        if path.is_file():
            return path
    return None


def describe_option(group: str, name: str, argv: list[str]) -> str:
    """The first comment line of the option's YAML file (not ``# @package``), or ''."""
    path = _option_file(group, name, argv)
    if path is None:
        return ""
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        text = text.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def help_text(argv: list[str]) -> str:
    """expconf's ``--help`` page: recipes, groups, the most used overrides, the other commands, docs."""
    p = prog()
    lines = [
        f"{p}: train a PyTorch Lightning model from a typed Hydra config (expconf {_own_version()}).",
        "",
        f"usage: {p} [recipe=NAME] [GROUP=OPTION ...] [key=value ...] [--cfg job|hydra|all [--resolve]] [-m]",
        "",
        "Recipes (recipe=NAME; +recipe=NAME works too):",
    ]
    recipes = group_options("recipe", argv)
    width = max((len(r) for r in recipes), default=0)
    lines += [f"  {r.ljust(width)}  {describe_option('recipe', r, argv)}".rstrip() for r in recipes] or ["  (none)"]
    lines += ["", "Groups (GROUP=OPTION; applied in this order, later wins, then key=value overrides):"]
    for group in DEFAULTS_GROUPS:
        options = ", ".join(group_options(group, argv)) or "(none yet: add DIR/" + group + "/NAME.yaml)"
        lines.append(f"  {group.ljust(10)}  {options}")
    lines.append("  your own options: --config-dir DIR with DIR/GROUP/NAME.yaml (e.g. DIR/experiment/foo.yaml)")
    lines += ["", "Overrides people use most (any key of the config tree: key=value):"]
    lines += [f"  {p} recipe=gpt {args}\n      {what}" for args, what in COMMON_OVERRIDES]
    lines += [
        "",
        "Inspect, run nothing:",
        "  --cfg job [--resolve]   print the composed config (hydra: Hydra's part, all: both)",
        "  --info defaults         where each part of the config comes from",
        "  --version               expconf's version and Hydra's",
        "  --hydra-help            Hydra's own options and flags",
        "",
        "Shell completion (bash, zsh, fish):",
        '  eval "$(expconf-train -sc install=bash)"',
        "",
        "Other commands:",
        "  expconf-runs ls [LOG_DIR]    the runs under ./nemo_experiments: state, steps, best metric",
        "  expconf-runs show RUN_DIR    a run's checkpoints and what resume would pick",
        "  expconf-migrate OLD.yaml     turn a NeMo 1.0 exp_manager block into an experiment file",
        "",
        "Errors: one line and exit code 2 before anything is written; EXPCONF_DEBUG=1 shows the traceback.",
        "Docs: docs/getting-started.md, docs/reference.md (every key) in the expconf repository; `make docs`.",
    ]
    return "\n".join(lines)


def answer_help_or_version(argv: list[str]) -> bool:
    """Print the page for ``--help``/``-h`` or the line for ``--version``; False when neither was asked."""
    if not {"--help", "-h", "--version"} & set(argv):
        return False
    from expconf.config.store import register_all

    register_all()  # the ConfigStore's group options appear on the help page
    print(version_text() if "--version" in argv else help_text(argv))
    return True
