"""Model FLOPs utilisation: the cards' dense bf16 peaks and MFU from FLOPs per token and tokens/s.

The FLOPs per token come from ``GPT.flops_per_token()`` (6N + 12 L H Q T); the same number feeds
``python -m expconf.describe``, the ``mfu`` metric of training and bench/gpu_throughput.py.
"""

from __future__ import annotations

from typing import Any

#: Dense bf16 tensor-core peak (no sparsity) per card, in FLOP/s, by a substring of the card's name.
#: Checked in order, so the PCIe / NVL variants match before the SXM default.
BF16_PEAK = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
}


def peak_flops(device_name: str, override_tflops: float | None = None) -> float | None:
    """The card's dense bf16 peak in FLOP/s (None when unknown and not given)."""
    if override_tflops:
        return override_tflops * 1e12
    for key, flops in BF16_PEAK.items():
        if key in device_name:
            return flops
    return None


def device_peak_flops(device: Any) -> float | None:
    """The bf16 peak of a CUDA ``torch.device`` (None for other devices and unknown cards)."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return peak_flops(torch.cuda.get_device_name(device))


def mfu(flops_per_token: int, tokens_per_s: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all devices doing the work."""
    return flops_per_token * tokens_per_s / peak
