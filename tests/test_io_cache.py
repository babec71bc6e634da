"""Derived-data caches are used only when made for the same generator and settings."""

from __future__ import annotations

import logging

import torch

from lsap.core.atomic import atomic_torch_save
from lsap.core.cache import read_cache


def test_cache_is_read_only_when_it_matches_and_damage_is_ignored(tmp_path, caplog):
    path = tmp_path / "c.pt"
    assert read_cache(path, "test", {"seed": 0}) is None  # missing: silently absent

    atomic_torch_save(path, {"sha256": "ab", "seed": 0, "x": torch.ones(3)})
    obj = read_cache(path, "test", {"sha256": "ab", "seed": 0}, fits=lambda o: o["x"].shape == (3,))
    assert obj is not None and torch.equal(obj["x"], torch.ones(3))

    with caplog.at_level(logging.WARNING, logger="lsap.core.cache"):
        assert read_cache(path, "test", {"sha256": "ab", "seed": 1}) is None  # other setting
        assert read_cache(path, "test", {"sha256": "ab"}, fits=lambda o: False) is None
        assert read_cache(path, "test", {"missing_key": 1}) is None  # older layout
        path.write_bytes(b"not a torch file")
        assert read_cache(path, "test", {"seed": 0}) is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("another generator or setting" in m for m in messages) == 2
    assert sum("unreadable test cache" in m for m in messages) == 2
