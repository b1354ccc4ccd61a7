"""The arithmetic of bench/gpu_throughput.py: the card's bf16 peak, tokens/s and MFU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.gpu_throughput import peak_flops, summarize


def test_peak_by_card_name() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", None) == 989e12  # SXM
    assert peak_flops("NVIDIA H200", None) == 989e12
    assert peak_flops("NVIDIA H100 PCIe", None) == 756e12
    assert peak_flops("Tesla T4", None) is None  # unknown: no MFU rather than a wrong one
    assert peak_flops("Tesla T4", 65.0) == 65e12


def test_tokens_per_second_and_mfu_from_steady_steps() -> None:
    root = SimpleNamespace(data=SimpleNamespace(global_batch_size=8, seq_length=1024))
    times = [30.0, 5.0, 0.5, 0.5, 0.5]  # the first two (compilation) are left out
    fig = summarize("raw", "gpu", (times, [1.0] * 5, 1_000_000), 2, root, 989e12)
    assert fig.steps == 3 and fig.median_step_s == 0.5
    assert fig.tokens_per_s == pytest.approx(8 * 1024 / 0.5)
    assert fig.mfu == pytest.approx(1_000_000 * 8 * 1024 / 0.5 / 989e12)
    assert summarize("raw", "cpu", (times, [], 10), 2, root, None).mfu is None
