"""Recipes: models and presets composed from expconf's configs (installed as ``expconf.recipes``)."""
