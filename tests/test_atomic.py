"""Atomic writes: the file appears whole, and with the permissions the user's umask asks for."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from lsap.core.atomic import atomic_torch_save, atomic_write_json, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    paths = [
        atomic_write_text(tmp_path / "a.txt", "x"),
        atomic_write_json(tmp_path / "b.json", {"x": 1}),
        atomic_torch_save(tmp_path / "c.pt", {"x": torch.ones(2)}),
    ]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.pt"]


def test_atomic_write_replaces_and_cleans_up_on_failure(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed")

    from lsap.core.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
