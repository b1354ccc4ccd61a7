"""``python -m expconf`` is ``python -m expconf.train``."""

from expconf.train import main

main()
