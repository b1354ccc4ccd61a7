"""Lightning's own ModelCheckpoint tests, run against expconf.ModelCheckpoint (a yardstick of drop-in fidelity).

Extracts ``tests/tests_pytorch/checkpointing/test_model_checkpoint.py`` and the helpers it needs
from a Lightning git checkout into a scratch folder (nothing of Lightning is copied into this
repository), points its ``lightning.pytorch`` imports at the installed ``pytorch_lightning``, and
runs it twice: with Lightning's ``ModelCheckpoint``, and with ``expconf.ModelCheckpoint`` wrapped
to take Lightning's defaults (``monitor=None, save_top_k=1, save_last=None, filename=None``).
Prints how many of the tests that pass with Lightning's class also pass with expconf's, and the
names of those that do not.

    python bench/lightning_yardstick.py --git-dir /path/to/pytorch-lightning/.git [--tag 2.6.5]

Needs ``jsonargparse`` (the test module imports it) besides the dev extra.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

TEST = "tests/tests_pytorch/checkpointing/test_model_checkpoint.py"
PATHS = [
    "tests/tests_pytorch/__init__.py",
    "tests/tests_pytorch/conftest.py",
    "tests/tests_pytorch/helpers",
    "tests/tests_pytorch/checkpointing/__init__.py",
    TEST,
]

PLUGIN = '''
"""Swaps ModelCheckpoint for expconf's (with Lightning's defaults) when EXPCONF_YARDSTICK=expconf."""
import os
import typing

import pytest
import pytorch_lightning.callbacks

import expconf


class LightningDefaults(expconf.ModelCheckpoint):
    def __init__(self, dirpath=None, filename=None, monitor=None, verbose=False, save_last=None, save_top_k=1,
                 save_on_exception=False, save_weights_only=False, mode="min", auto_insert_metric_name=True,
                 every_n_train_steps=None, train_time_interval=None, every_n_epochs=None,
                 save_on_train_epoch_end=None, enable_version_counter=True):
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, verbose=verbose,
                         save_last=save_last, save_top_k=save_top_k, save_on_exception=save_on_exception,
                         save_weights_only=save_weights_only, mode=mode,
                         auto_insert_metric_name=auto_insert_metric_name,
                         every_n_train_steps=every_n_train_steps, train_time_interval=train_time_interval,
                         every_n_epochs=every_n_epochs, save_on_train_epoch_end=save_on_train_epoch_end,
                         enable_version_counter=enable_version_counter)


# The wrapper's parameters carry expconf's own (evaluated) annotations, which Lightning's CLI test reads.
LightningDefaults.__init__.__annotations__ = {
    k: v for k, v in typing.get_type_hints(expconf.ModelCheckpoint.__init__).items() if k != "return"
}


@pytest.fixture(autouse=True)
def _expconf_checkpoint(request, monkeypatch):
    if os.environ.get("EXPCONF_YARDSTICK") == "expconf":
        monkeypatch.setattr(pytorch_lightning.callbacks, "ModelCheckpoint", LightningDefaults)
        if hasattr(request.module, "ModelCheckpoint"):
            monkeypatch.setattr(request.module, "ModelCheckpoint", LightningDefaults)
    yield
'''


def extract(git_dir: str, tag: str, into: Path) -> None:
    """The test module and its helpers at ``tag``, with imports pointed at pytorch_lightning."""
    for path in PATHS:
        listing = subprocess.run(
            ["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only", tag, path],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in listing:
            text = subprocess.run(
                ["git", "--git-dir", git_dir, "show", f"{tag}:{name}"], check=True, capture_output=True, text=True
            ).stdout
            text = re.sub(r"\blightning\.pytorch\b", "pytorch_lightning", text)
            text = re.sub(r"\blightning\.fabric\b", "lightning_fabric", text)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    (into / "yardstick_plugin.py").write_text(PLUGIN)


def run(into: Path, which: str) -> dict[str, str]:
    """Outcome ('passed', 'failed', 'skipped', ...) of every test, with ``which`` class."""
    report = into / f"{which}.xml"
    env = {**os.environ, "EXPCONF_YARDSTICK": which, "PYTHONPATH": f"{into}:{into / 'tests'}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            TEST,
            "-p",
            "yardstick_plugin",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "300",
            f"--junitxml={report}",
            "-o",
            "addopts=",
            "-W",
            "ignore",
        ],
        cwd=into,
        env=env,
        check=False,
        capture_output=True,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes[case.get("name", "")] = outcome
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--git-dir", required=True, help="a Lightning clone's .git (or bare mirror)")
    parser.add_argument("--tag", default="2.6.5")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    into = Path(args.workdir or tempfile.mkdtemp(prefix="ltests-"))
    extract(args.git_dir, args.tag, into)
    lightning = run(into, "lightning")
    ours = run(into, "expconf")
    baseline = sorted(n for n, o in lightning.items() if o == "passed")
    kept = [n for n in baseline if ours.get(n) == "passed"]
    print(f"{len(kept)} of the {len(baseline)} tests that pass with Lightning's class pass with expconf's")
    for name in baseline:
        if ours.get(name) != "passed":
            print(f"  not passing: {name}")


if __name__ == "__main__":
    main()
