"""The command line of ``python -m expconf.train``.

:mod:`~expconf.cli.args` rewrites the arguments for Hydra, :mod:`~expconf.cli.messages` turns
Hydra / OmegaConf / YAML exceptions into one-line errors, :mod:`~expconf.cli.report` is the one
exit path, :mod:`~expconf.cli.help` answers ``--help`` / ``--version`` and
:mod:`~expconf.cli.hydra_guard` checks every config Hydra composes.
"""
