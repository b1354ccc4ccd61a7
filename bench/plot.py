"""docs/step_times.png: distributions of steady-state step times, expconf against the raw loop."""

from __future__ import annotations

from pathlib import Path


def plot_step_times(expconf_s: list[float], raw_s: list[float], path: Path) -> None:
    """Overlaid histograms and box plots of the two sets of step times (seconds), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = [x * 1e3 for x in expconf_s]
    b = [x * 1e3 for x in raw_s]
    fig, (hist, box) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    lo, hi = min(a + b), max(a + b)
    bins = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 10
    hist.hist(b, bins=bins, alpha=0.6, label=f"raw PyTorch loop (n={len(b)})")
    hist.hist(a, bins=bins, alpha=0.6, label=f"python -m expconf.train (n={len(a)})")
    hist.set_xlabel("step time (ms)")
    hist.set_ylabel("steps")
    hist.set_title("GPT recipe, steady-state optimizer steps")
    hist.legend()
    box.boxplot([b, a], showfliers=False)
    box.set_xticks([1, 2], ["raw", "expconf"])
    box.set_ylabel("step time (ms)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
