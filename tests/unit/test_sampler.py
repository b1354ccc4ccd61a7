"""ResumableSampler and TokenDataModule: exact mid-epoch resume positions, without replay."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from expconf.sampler import ResumableSampler


def epochs(sampler: ResumableSampler, first: int, count: int) -> list[int]:
    out: list[int] = []
    for e in range(first, first + count):
        sampler.set_epoch(e)
        out += list(sampler)
    return out


def test_order_depends_only_on_seed_and_epoch() -> None:
    a = ResumableSampler(100, seed=3, step_samples=8)
    b = ResumableSampler(100, seed=3, step_samples=8)
    assert epochs(a, 0, 3) == epochs(b, 0, 3)
    assert list(a) != list(ResumableSampler(100, seed=4, step_samples=8))
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert len(a) == 96 and a.steps_per_epoch == 12


def test_unshuffled_is_in_order() -> None:
    s = ResumableSampler(20, seed=0, shuffle=False, step_samples=4)
    assert list(s) == list(range(20))


def test_ranks_get_disjoint_equal_shares() -> None:
    shares = [list(ResumableSampler(103, seed=1, rank=r, world_size=3, step_samples=4)) for r in range(3)]
    assert all(len(s) == 32 for s in shares)
    assert not set(shares[0]) & set(shares[1]) and not set(shares[1]) & set(shares[2])


@pytest.mark.parametrize("step", [0, 1, 7, 12, 13, 30, 36])
def test_resume_at_continues_the_uninterrupted_sequence(step: int) -> None:
    full = epochs(ResumableSampler(100, seed=5, step_samples=8), 0, 4)
    resumed = ResumableSampler(100, seed=5, step_samples=8)
    resumed.resume_at(step)
    epoch = step // resumed.steps_per_epoch
    assert resumed.epoch == epoch
    tail = epochs(resumed, epoch, 4 - epoch)
    assert tail == full[step * 8 :]


def test_resume_follows_a_shorter_trainer_epoch() -> None:
    # limit_train_batches: the trainer reads 3 steps of each epoch, then starts the next one.
    def run(start: int, epoch_count: int) -> list[int]:
        s = ResumableSampler(100, seed=5, step_samples=8, epoch_steps=3)
        out: list[int] = []
        if start:
            s.resume_at(start)
        for e in range(s.epoch, epoch_count):
            s.set_epoch(e)
            it = iter(s)
            done = start % 3 if e == start // 3 else 0
            out += [next(it) for _ in range((3 - done) * 8)]
        return out

    assert run(4, 4) == run(0, 4)[4 * 8 :]


def test_too_little_data_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot fill one optimizer step"):
        ResumableSampler(10, seed=0, world_size=2, step_samples=8)


class Counting(Dataset[torch.Tensor]):
    """Counts item loads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.loads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        self.loads += 1
        return torch.tensor(i)


@pytest.mark.parametrize("step", [10, 1000])
def test_resuming_far_in_costs_no_replay(step: int) -> None:
    """The first resumed batch loads exactly one batch of samples, whatever the step."""
    ds = Counting(100_000)
    sampler = ResumableSampler(len(ds), seed=0, step_samples=8)
    sampler.resume_at(step)
    loader: DataLoader[Any] = DataLoader(ds, batch_size=4, sampler=sampler)
    batch = next(iter(loader))
    assert ds.loads == 4
    expected = epochs(ResumableSampler(len(ds), seed=0, step_samples=8), 0, 1)[step * 8 : step * 8 + 4]
    assert batch.tolist() == expected


@pytest.mark.parametrize("step", [10, 1000])
def test_datamodule_resume_loads_only_the_next_batch(step: int, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the DataModule's checkpoint state, as a resumed run gets it."""
    import numpy as np

    from expconf import data as data_mod
    from expconf.config.data import DataConfig

    tokens = np.arange(40_000 * 17 + 1, dtype=np.uint16) % 251
    (tmp_path / "t.bin").write_bytes(tokens.tobytes())
    cfg = DataConfig(
        path=str(tmp_path / "t.bin"),
        seq_length=16,
        micro_batch_size=4,
        global_batch_size=8,
        cache_dir=str(tmp_path / "cache"),
    )
    loads: list[int] = []
    original = data_mod.TokenWindows.__getitem__
    monkeypatch.setattr(data_mod.TokenWindows, "__getitem__", lambda self, i: (loads.append(i), original(self, i))[1])

    fresh = data_mod.TokenDataModule(cfg, seed=7)
    fresh.setup("fit")
    sampler_order = list(fresh.train_dataloader().sampler)  # type: ignore[arg-type]
    resumed = data_mod.TokenDataModule(cfg, seed=7)
    resumed.setup("fit")
    resumed.load_state_dict({"global_step": step})
    loads.clear()
    x, _ = next(iter(resumed.train_dataloader()))
    assert tuple(x.shape) == (4, 16)
    assert len(loads) == 4  # one micro-batch, whatever the step
    assert loads == sampler_order[step * 8 : step * 8 + 4]
