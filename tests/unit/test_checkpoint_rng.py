"""RNG states: captured, serialised with torch.save/torch.load(weights_only=True), restored."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from expconf.checkpoint import rng


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_capture_restore_replays_every_generator_through_a_checkpoint() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()
    states = {"per_rank": [rng.capture()]}
    buf = io.BytesIO()
    torch.save({"expconf_rng": states}, buf)
    expected = draws()
    draws()  # move every generator on
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["expconf_rng"]
    rng.restore(loaded, rank=0)
    assert draws() == expected


def test_each_rank_gets_its_own_state() -> None:
    torch.manual_seed(10)
    r0 = rng.capture()
    torch.manual_seed(11)
    r1 = rng.capture()
    rng.restore({"per_rank": [r0, r1]}, rank=1)
    torch.manual_seed(11)
    expected = torch.rand(2)
    rng.restore({"per_rank": [r0, r1]}, rank=1)
    assert torch.equal(torch.rand(2), expected)
    rng.restore({"per_rank": [r0, r1]}, rank=0)
    torch.manual_seed(10)
    expected = torch.rand(2)
    rng.restore({"per_rank": [r0, r1]}, rank=0)
    assert torch.equal(torch.rand(2), expected)


def test_missing_states_change_nothing() -> None:
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    rng.restore({}, rank=0)
    assert torch.equal(torch.rand(2), expected)
