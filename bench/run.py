"""Runs every ``bench/rows_*.py`` module and writes docs/benchmarks.md (``make bench``).

``python -m bench.run [--quick] [--only TOPIC_MODULE ...]``: with ``--only``, the sections of the
topics not run keep their rows from the page already there.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import re
import sys
import time
from pathlib import Path

import bench
from bench.common import Row

DOCS = Path(__file__).resolve().parents[1] / "docs"


def discover() -> list[str]:
    """Names of the benchmark modules, in a stable order."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("rows_"))


def machine() -> str:
    """A one-line description of this machine."""
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)"
    )


def load() -> str:
    """The 1-, 5- and 15-minute load averages (how busy the machine was)."""
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


METHOD = Path(__file__).resolve().parent / "method.md"


def previous_sections(page: str) -> tuple[dict[str, str], str]:
    """The row sections (``## topic`` and its table) of an earlier page, in its order, and its run lines."""
    sections: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=## )", page):
        heading, _, body = block.partition("\n")
        table = [line for line in body.splitlines() if line.startswith("|")]
        if heading.startswith("## ") and table and table[0].startswith("| measurement |"):
            sections[heading[3:].strip()] = "\n".join([heading, "", *table])
    run = " ".join(line for line in page.splitlines() if line.startswith(("Run: ", "Mode: ")))
    return sections, run


def render(
    rows: list[Row], extra: str = "", conditions: str = "", previous: tuple[dict[str, str], str] | None = None
) -> str:
    """docs/benchmarks.md; with ``previous`` (``--only``), the topics not measured now keep that page's rows."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`). Every row is a ratio of two",
        "things measured in the same invocation, interleaved A B A B; medians, and spreads as",
        "(max - min) / median of each side's repeats.",
        "",
        f"Machine: {machine()}.",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        *([conditions] if conditions else []),
        "",
    ]
    topics: dict[str, list[Row]] = {}
    for r in rows:
        topics.setdefault(r.topic, []).append(r)
    kept, run = previous or ({}, "")
    kept = {t: text for t, text in kept.items() if t not in topics and f"## {t}\n" not in extra}
    if kept:
        lines[-1:-1] = [
            f"Not measured in this run (`--only`), kept from the page's previous run: {', '.join(kept)} ({run})"
        ]
    order = [*(previous[0] if previous else {}), *topics]
    for topic in dict.fromkeys(order):
        if topic in kept:
            lines += [*kept[topic].splitlines(), ""]
            continue
        rs = topics[topic]
        lines += [
            f"## {topic}",
            "",
            "| measurement | ratio | goal | met | A median | B median | A spread | B spread | repeats | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            lines.append(
                f"| {r.name} | {r.ratio:.3f} | {r.goal} | {'yes' if r.met else '**no**'} | "
                f"{r.a_median:.4g} {r.unit} | {r.b_median:.4g} {r.unit} | {r.a_spread:.1%} | {r.b_spread:.1%} | "
                f"{r.repeats} | {r.note} |"
            )
        lines.append("")
    if METHOD.is_file():
        lines += [METHOD.read_text().rstrip(), ""]
    return "\n".join(lines) + extra


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the table."""
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not for publishing)")
    p.add_argument("--only", nargs="*", default=None, help="module names such as rows_step")
    p.add_argument("--out", default=str(DOCS / "benchmarks.md"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # this process's own measurements; children get OMP_NUM_THREADS=1
    os.environ["OMP_NUM_THREADS"] = "1"
    rows: list[Row] = []
    started, load_before = time.perf_counter(), load()
    for name in args.only or discover():
        print(f"== {name}", flush=True)
        mod = importlib.import_module(f"bench.{name}")
        got = mod.rows(quick=args.quick)
        for r in got:
            print(f"   {r.name}: {r.ratio:.3f} (goal {r.goal}) {'ok' if r.met else 'MISSED'}", flush=True)
        rows += got
    extra = ""
    gpu = DOCS / "benchmarks-gpu.md"
    if gpu.is_file():
        extra = "\n" + gpu.read_text()
    conditions = (
        f"Mode: {'--quick (smoke run, not for publishing)' if args.quick else 'full'}; "
        f"took {time.perf_counter() - started:.0f} s; load average (1/5/15 min) {load_before} at the start, "
        f"{load()} at the end ({os.cpu_count()} cores: a load above that means other work shared the machine)."
    )
    out = Path(args.out)
    previous = previous_sections(out.read_text()) if args.only and out.is_file() else None
    out.write_text(render(rows, extra, conditions, previous))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
