"""Builders of the offline benchmark sets (man pages, Python docs, emoji, icons, the text corpus): one registry in :mod:`mrl.corpora.registry`."""
