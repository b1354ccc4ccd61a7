"""Everything that spans more than one process.

Read in this order: :mod:`~expconf.distributed.ranks` (who am I, from the launcher's variables),
:mod:`~expconf.distributed.agreement` (rank 0 decides, the others read its value),
:mod:`~expconf.distributed.handoff` (how a run's decisions and its resolved config reach its other
ranks and relaunched children), :mod:`~expconf.distributed.meta_init` (building a model whose
shards each rank initialises), :mod:`~expconf.distributed.ddp` and
:mod:`~expconf.distributed.fsdp` (the strategies), :mod:`~expconf.distributed.world_resume`
(resuming on a different number of ranks). Imports go only down this list.
"""
