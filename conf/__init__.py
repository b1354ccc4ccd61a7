"""Packaged YAML configs (installed as ``expconf.conf``); searched as ``pkg://expconf.conf``."""
