"""Checkpoints: the ModelCheckpoint callback, atomic (a)synchronous writes, discovery, model archives."""
