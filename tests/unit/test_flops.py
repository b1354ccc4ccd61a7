"""expconf.flops: model FLOP utilisation from the FLOPs per token and a known device peak."""

from __future__ import annotations

import pytest
import torch

from expconf.describe import describe
from expconf.flops import device_peak_flops, mfu, peak_flops
from expconf.train import compose_root


def test_mfu_uses_the_flops_per_token_and_a_known_peak() -> None:
    d = describe(compose_root(["+recipe=gpt2_124m"]))
    assert mfu(d.flops_per_token, 400_000.0, peak_flops("NVIDIA H100 80GB HBM3") or 0) == pytest.approx(
        855_166_464 * 400_000 / 989e12
    )
    assert device_peak_flops(torch.device("cpu")) is None  # no MFU on the CPU rather than a wrong one
