"""expconf.distributed.world_resume: a checkpoint's loop counters follow a new gradient accumulation."""

from __future__ import annotations

import pytest

from expconf.distributed.world_resume import rescale_batch_progress


def test_batch_progress_follows_the_new_accumulation() -> None:
    # As saved in the end hook of step 3's last micro-batch: 'completed' trails by that micro-batch.
    counts = {"ready": 6, "completed": 5, "started": 6, "processed": 6}
    loops = {"fit_loop": {"epoch_loop.batch_progress": {"total": dict(counts), "current": dict(counts)}}}
    rescale_batch_progress(loops, old_accumulate=2, new_accumulate=1)
    assert loops["fit_loop"]["epoch_loop.batch_progress"]["total"] == {**{k: 3 for k in counts}, "completed": 2}
    rescale_batch_progress(loops, old_accumulate=1, new_accumulate=4)
    assert loops["fit_loop"]["epoch_loop.batch_progress"]["current"] == {**{k: 12 for k in counts}, "completed": 11}
    with pytest.raises(ValueError, match="saved mid-step"):
        rescale_batch_progress(loops, old_accumulate=5, new_accumulate=1)
