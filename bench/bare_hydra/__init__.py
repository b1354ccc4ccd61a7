"""A bare Hydra app that prints its config: the baseline of the ``--cfg job`` startup row."""
