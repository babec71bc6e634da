"""Codes files: every accepted format reads to the same w+, bad files get one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsap.io import LsapFileError, load_codes

NUM_WS, W_DIM = 8, 64


@pytest.fixture
def codes():
    return torch.randn(5, NUM_WS, W_DIM)


@pytest.mark.parametrize(
    "name, write",
    [
        ("a.pt", lambda p, c: torch.save(c, p)),
        ("b.pt", lambda p, c: torch.save({"w_plus": c, "provenance": {"seed": 0}}, p)),
        ("c.npy", lambda p, c: np.save(p, c.numpy())),
        ("d.npz", lambda p, c: np.savez(p, latents=c.numpy())),
        ("e.npz", lambda p, c: np.savez(p, c.numpy())),
    ],
)
def test_formats_read_to_the_same_codes(tmp_path, codes, name, write):
    write(tmp_path / name, codes)
    torch.testing.assert_close(load_codes(tmp_path / name, NUM_WS, W_DIM), codes)


def test_w_codes_are_broadcast(tmp_path):
    w = torch.randn(4, W_DIM)
    np.save(tmp_path / "w.npy", w.numpy().astype(np.float64))
    out = load_codes(tmp_path / "w.npy", NUM_WS, W_DIM)
    assert out.shape == (4, NUM_WS, W_DIM) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 3], w)


def test_bad_files_name_the_file_and_problem(tmp_path, codes):
    cases = {
        "layers.pt": (
            codes[:, :7],
            r"layers\.pt: codes have 7 layers but the generator has num_ws=8",
        ),
        "dim.pt": (codes[..., :32], r"dim\.pt: codes have w_dim 32, the generator 64"),
        "rank.pt": (codes[0, 0], r"rank\.pt: codes have shape \[64\]; expected"),
        "empty.pt": (codes[:0], r"empty\.pt: holds no codes"),
        "nan.pt": (
            codes.clone().index_fill_(0, torch.tensor([2]), float("nan")),
            r"nan\.pt: codes contain NaN or inf \(rows \[2\]\)",
        ),
        "dict.pt": ({"a": codes, "b": codes}, r"dict\.pt: no codes found"),
        "text.pt": ("hello", r"text\.pt: holds a str, not a tensor"),
        "complex.pt": (torch.complex(codes, codes), r"complex\.pt: codes have dtype complex64, "),
        "int.pt": (codes.long(), r"int\.pt: codes have dtype int64, expected floating point"),
    }
    for name, (obj, pattern) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(LsapFileError, match=pattern):
            load_codes(tmp_path / name, NUM_WS, W_DIM)
    np.save(tmp_path / "complex.npy", codes.numpy().astype(np.complex128))
    with pytest.raises(LsapFileError, match=r"complex\.npy: codes have dtype complex128, expected"):
        load_codes(tmp_path / "complex.npy", NUM_WS, W_DIM)
    np.save(tmp_path / "int.npy", codes.numpy().astype(np.int32))
    with pytest.raises(LsapFileError, match=r"int\.npy: codes have dtype int32, expected float"):
        load_codes(tmp_path / "int.npy", NUM_WS, W_DIM)
    (tmp_path / "notes.txt").write_text("not codes")
    with pytest.raises(LsapFileError, match=r"notes\.txt: not a tensor file"):
        load_codes(tmp_path / "notes.txt", NUM_WS, W_DIM)
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(LsapFileError, match=r"broken\.npy: not a readable \.npy file"):
        load_codes(tmp_path / "broken.npy", NUM_WS, W_DIM)
    with pytest.raises(LsapFileError, match=r"absent\.pt: no such file"):
        load_codes(tmp_path / "absent.pt", NUM_WS, W_DIM)
    for err in [LsapFileError("x.pt", "a\nb")]:
        assert str(err) == "x.pt: a b"
    (tmp_path / "words.pt").write_text("not codes")  # torch's refusal text spans 5 lines
    with pytest.raises(LsapFileError) as e:
        load_codes(tmp_path / "words.pt", NUM_WS, W_DIM)
    assert str(e.value) == (
        f"{tmp_path}/words.pt: refused or unreadable (UnpicklingError: Unsupported operand 110)"
    )
