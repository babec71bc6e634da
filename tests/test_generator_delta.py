"""Generator deltas: a tuned generator saved against its base reloads to the same images, names its
base, refuses another base, and its size is known (and bounded) before anything is written."""

from __future__ import annotations

import pytest
import torch
from conf_entries import pti_kwargs

from lsap import load_generator, save_generator
from lsap.io import (
    CheckpointError,
    LsapFileError,
    apply_generator_delta,
    check_disk_budget,
    estimate_delta_nbytes,
    generator_from_config,
    save_generator_delta,
)
from lsap.io.checkpoints import read_generator_state
from lsap.io.generator_delta import GENERATOR_DELTA_FORMAT, generator_delta
from lsap.nets import Generator, GeneratorConfig, iter_w
from lsap.refinement import pivotal_tuning

LPIPS_OPTIONS = {"lpips": {"net": "alex", "backbone": "random", "resize": None}}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_G, other_G):
    """A base generator file, the base loaded from it, and a PTI result tuned from it."""
    base_path = save_generator(tiny_G, tmp_path_factory.mktemp("base") / "G.pt")
    base = load_generator(base_path)
    with torch.no_grad():
        targets = other_G.synthesis(next(iter_w(other_G, 1, seed=7))).clamp(-1, 1)
    pivots = next(iter_w(base, 1, seed=11))
    res = pivotal_tuning(
        base,
        targets,
        pivots,
        **pti_kwargs(steps=5, lr=3e-3, loss_options=LPIPS_OPTIONS, locality=None),
    )
    return base_path, base, res.generators[0], pivots


def _codes(G, n=4, seed=3):
    return next(iter_w(G, n, seed=seed))[:, None].repeat(1, G.num_ws, 1)


def test_delta_reloads_to_identical_images(tmp_path, tuned):
    base_path, base, G, _ = tuned
    info = save_generator_delta(G, base, tmp_path / "delta.pt", base_path=base_path)
    raw = torch.load(info.path, weights_only=True)
    assert raw["format"] == GENERATOR_DELTA_FORMAT and raw["base_sha256"] == base.sha256
    assert {d.dtype for d in raw["delta"].values()} == {torch.float16}
    assert all(k.startswith("synthesis.") for k in raw["delta"])  # PTI tunes synthesis only
    # the reported size is the file's and within the estimate made before tuning
    assert info.nbytes == info.path.stat().st_size <= estimate_delta_nbytes(base)
    assert info.num_params == sum(p.numel() for p in base.synthesis.parameters())
    codes = _codes(base)
    with torch.no_grad():
        expected = apply_generator_delta(base, generator_delta(G, base)).synthesis(codes)
        reloads = [
            load_generator(info.path, base=base),  # the base generator in memory
            load_generator(info.path, base=base_path),  # its file
            load_generator(info.path),  # the base file recorded in the delta
            generator_from_config({"path": str(info.path), "base": str(base_path)}),
        ]
        for R in reloads:
            assert R.base_sha256 == base.sha256 and R.sha256 == reloads[0].sha256
            assert torch.equal(R.synthesis(codes), expected)  # bit-identical images
        # ... which are the tuned generator's up to the float16 rounding of the delta
        torch.testing.assert_close(expected, G.synthesis(codes), atol=2e-3, rtol=0)
        assert 0 < info.max_abs_error < 1e-3
    # the base is untouched by loading
    assert torch.equal(base.synthesis.const, load_generator(base_path).synthesis.const)


def test_float32_delta_is_exact_enough(tmp_path, tuned):
    _, base, G, _ = tuned
    info16 = save_generator_delta(G, base, tmp_path / "d16.pt")
    info32 = save_generator_delta(G, base, tmp_path / "d32.pt", dtype="float32")
    assert info32.nbytes > 1.9 * info16.nbytes - 64 * 1024
    assert info32.max_abs_error < 1e-6
    codes = _codes(base)
    with torch.no_grad():
        torch.testing.assert_close(
            load_generator(info32.path, base=base).synthesis(codes), G.synthesis(codes)
        )


def test_delta_for_another_base_and_other_misuse_are_refused(tmp_path, tuned, other_G):
    base_path, base, G, _ = tuned
    delta_path = save_generator_delta(G, base, tmp_path / "delta.pt").path
    with pytest.raises(CheckpointError, match=r"delta\.pt: delta for another base generator"):
        load_generator(delta_path, base=other_G)
    other_path = save_generator(other_G, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"another base .*given base file .*other\.pt"):
        load_generator(delta_path, base=other_path)
    # saved without base_path: nothing to fall back on
    with pytest.raises(CheckpointError, match=r"needs its base generator .*pass base="):
        load_generator(delta_path)
    with pytest.raises(CheckpointError, match=r"G\.pt: base= is for generator deltas"):
        load_generator(base_path, base=base)
    with pytest.raises(CheckpointError, match=r"is a generator delta; load it with"):
        read_generator_state(delta_path)
    with pytest.raises(ValueError, match=r"tuned from base sha256 .* not from the given base"):
        save_generator_delta(G, other_G, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"over the limit"):
        save_generator_delta(G, base, tmp_path / "big.pt", max_bytes=1000)
    assert not (tmp_path / "big.pt").exists()


def test_delta_size_is_known_before_writing(tmp_path):
    with torch.device("meta"):
        ffhq = Generator(GeneratorConfig.from_dict({"resolution": 1024, "channel_multiplier": 2}))
    per_image = estimate_delta_nbytes(ffhq)  # float16, synthesis weights
    assert 50e6 < per_image < 65e6
    assert estimate_delta_nbytes(ffhq, "float32") > 1.9 * per_image
    assert check_disk_budget(tmp_path, 3, 1000, max_total_bytes=10_000) == 3000
    with pytest.raises(LsapFileError, match=r"2824 generator deltas .* over the configured limit"):
        check_disk_budget(tmp_path / "new", 2824, per_image, max_total_bytes=int(20e9))
    with pytest.raises(LsapFileError, match=r"only .* free"):
        check_disk_budget(tmp_path, 1, 10**18, max_total_bytes=None)
