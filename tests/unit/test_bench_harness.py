"""The benchmark harness's pure parts: A/B interleaving, rows, the table, StepLog's bookkeeping, the plot."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import REPO

sys.path.insert(0, str(REPO))

from bench.common import Row, interleave, ratio_row, spread, steady
from bench.run import discover, previous_sections, render
from bench.steplog import StepLog, intervals, read


def test_interleave_alternates_a_and_b() -> None:
    order: list[str] = []
    xs, ys = interleave(lambda: order.append("a") or 1.0, lambda: order.append("b") or 2.0, repeats=3)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert xs == [1.0] * 3 and ys == [2.0] * 3


def test_ratio_row_uses_medians_and_goal() -> None:
    row = ratio_row("T", "n", [1.0, 1.1, 9.0], [1.0, 1.0, 1.0], 1.03)
    assert row.ratio == pytest.approx(1.1)
    assert not row.met and row.goal == "<= 1.03" and row.repeats == 3
    assert row.a_spread == pytest.approx((9.0 - 1.0) / 1.1)
    assert ratio_row("T", "n", [1.0, 1.02], [1.0, 1.0], 1.03).met
    assert spread([2.0, 2.0]) == 0.0


def test_steady_and_intervals() -> None:
    assert steady([5.0, 1.0, 1.0, 1.0], 1) == [1.0, 1.0, 1.0]
    assert steady([5.0], 3) == [5.0]
    assert intervals([1.5, 2.0, 3.0], start=1.0) == [0.5, 0.5, 1.0]


def test_render_lists_every_row_under_its_topic() -> None:
    rows = [
        Row("Step time", "x / y", 1.01, "<= 1.03", True, 2.0, 1.98, 0.1, 0.2, "s", 5, "note a"),
        Row("Startup", "p / q", 1.6, "<= 1.5", False, 3.0, 1.9, 0.0, 0.0, "s", 7),
    ]
    md = render(rows, "\nextra\n")
    assert "## Step time" in md and "## Startup" in md
    assert "| x / y | 1.010 | <= 1.03 | yes |" in md
    assert "| p / q | 1.600 | <= 1.5 | **no** |" in md
    assert md.endswith("extra\n")


def test_render_with_only_keeps_the_other_topics_of_the_previous_page() -> None:
    old = render(
        [
            Row("Fault tolerance", "a / b", 0.8, "<= 1.1", True, 1.0, 1.2, 0.1, 0.1, "s", 5),
            Row("Step time", "x / y", 1.01, "<= 1.03", True, 2.0, 1.98, 0.1, 0.2, "s", 5),
        ],
        "\n## Step-time distribution\n\n![plot](step_times.png)\n",
    )
    previous = previous_sections(old)
    assert list(previous[0]) == ["Fault tolerance", "Step time"] and previous[1].startswith("Run: ")
    new = [
        Row("Step time", "x / y", 1.2, "<= 1.03", False, 2.4, 2.0, 0.1, 0.2, "s", 5),
        Row("FSDP", "f / d", 0.5, "<= 0.6", True, 1.0, 2.0, 0.0, 0.0, "MB", 1),
    ]
    md = render(new, previous=previous)
    assert [line for line in md.splitlines() if line.startswith("## ")][:3] == [
        "## Fault tolerance",
        "## Step time",
        "## FSDP",
    ]
    assert "| a / b | 0.800 |" in md and "| x / y | 1.200 |" in md and "| x / y | 1.010 |" not in md
    assert "\n\n## Step time\n\n" in md and "\n\n## FSDP\n\n" in md  # sections kept whole, blank lines included
    assert "kept from the page's previous run: Fault tolerance (Run: " in md


def test_discover_finds_the_row_modules() -> None:
    assert {"rows_step", "rows_startup"} <= set(discover())


def _fake_trainer(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step)


def test_steplog_sums_micro_batches_per_optimizer_step(tmp_path: Path) -> None:
    log = StepLog(str(tmp_path / "s.json"))
    module = SimpleNamespace()
    log.on_train_start(_fake_trainer(0), module)  # type: ignore[arg-type]
    # two micro-batches per step: global_step moves after the second one's optimizer step
    scaled = [torch.tensor(x, dtype=torch.float32) for x in (1.25, 0.5, 2.0, 0.125)]
    for i, (loss, step) in enumerate(zip(scaled, (0, 1, 1, 2), strict=True)):
        log.on_train_batch_end(_fake_trainer(step), module, {"loss": loss}, None, i)  # type: ignore[arg-type]
    log.on_train_end(_fake_trainer(2), module)  # type: ignore[arg-type]
    rec = read(tmp_path / "s.json")
    assert rec["losses"] == [1.75, 2.125]
    assert len(rec["ends"]) == 2 and rec["ends"][0] <= rec["ends"][1]
    assert rec["first_step_unix"] > 0


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from bench.plot import plot_step_times

    out = tmp_path / "docs" / "step_times.png"
    plot_step_times([0.31, 0.3, 0.32, 0.305], [0.3, 0.29, 0.3, 0.31], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
