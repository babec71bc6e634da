"""data.batch_size=auto: the planned batch is the largest that fits, by the documented formula;
the footprint is measured from one real optimisation step at batch 1 and 2 when conf has none,
without touching the run (random state, generator, allocator peak)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conf_entries import conf_group
from invert_helpers import FAST, make_images, tiny_arch
from omegaconf import OmegaConf

from lsap.alignment import compute_anchors
from lsap.cli._common import config_dir
from lsap.inversion import InversionSettings
from lsap.inversion.memory import (
    Footprint,
    lsap_o_probe,
    measure_footprint,
    plan_batch_size,
    resolve_batch_size,
)
from lsap.io import init_generator
from lsap.losses import build_objective

MEMORY = {"headroom": 0.1, "max_batch": 64, "cpu_batch": 4}


def test_plan_is_the_largest_batch_that_fits():
    # 80 GiB card, 10 % headroom, 3 GiB fixed, 2.5 GiB per image: (73728 - 3072) / 2560 = 27.6
    b = plan_batch_size(81920, 2560, 3072, headroom=0.1, max_batch=64)
    assert b == 27
    assert 3072 + b * 2560 <= 81920 * 0.9 < 3072 + (b + 1) * 2560


def test_plan_respects_max_batch_and_refuses_when_nothing_fits():
    assert plan_batch_size(141000, 100, 0, headroom=0.0, max_batch=16) == 16
    with pytest.raises(ValueError, match="one image needs"):
        plan_batch_size(8000, 9000, 500, headroom=0.1, max_batch=64)
    with pytest.raises(ValueError, match="per_image_mb > 0"):
        plan_batch_size(8000, 0, 500, headroom=0.1, max_batch=64)


def test_resolve_passes_ints_and_uses_cpu_batch_without_cuda():
    assert resolve_batch_size(3, None, "cpu") == 3
    assert (
        resolve_batch_size("auto", {"cpu_batch": 2, "per_image_mb": 1, "fixed_mb": 0}, "cpu") == 2
    )


class FakeAllocator:
    """A peak-memory counter (``PeakMemory``) over a made-up allocator: a step at batch N holds
    ``fixed + N * per_image`` MiB on top of what the run already holds, then frees it."""

    def __init__(self, held: float, fixed: float, per_image: float) -> None:
        self.held, self.fixed, self.per_image = held, fixed, per_image
        self.allocated = self.peak = held
        self.resets = 0
        self.batches: list[int] = []

    def step(self, batch: int) -> None:
        self.batches.append(batch)
        torch.rand(3)  # the step draws from the global generator: the probe must undo it
        self.allocated += self.fixed + batch * self.per_image
        self.peak = max(self.peak, self.allocated)
        self.allocated -= self.fixed + batch * self.per_image

    def reset(self) -> None:
        self.resets += 1
        self.peak = self.allocated

    def peak_mb(self) -> float:
        return self.peak


def test_measured_footprint_is_linear_in_the_batch_and_leaves_no_trace():
    fake = FakeAllocator(held=500.0, fixed=300.0, per_image=1200.0)
    rng = torch.random.get_rng_state()
    found = measure_footprint(fake.step, fake)
    assert fake.batches == [1, 2]
    # what the run already held (weights, anchors) is part of the fixed share
    assert found == Footprint(per_image_mb=1200.0, fixed_mb=800.0)
    assert torch.equal(torch.random.get_rng_state(), rng)  # global random state restored
    assert fake.peak == fake.allocated == 500.0  # the probe's peak is not the run's


def test_auto_plans_from_the_probe_when_conf_has_no_footprint(caplog):
    fake = FakeAllocator(held=500.0, fixed=300.0, per_image=1200.0)
    memory = {**MEMORY, "per_image_mb": None, "fixed_mb": None}
    with caplog.at_level(logging.INFO, logger="lsap.inversion.memory"):
        b = resolve_batch_size(
            "auto", memory, "cuda", probe=lambda: fake.step, peak=fake, total_mb=16384
        )
    assert b == (16384 * 0.9 - 800) // 1200 == 11
    assert (
        "1200 MiB per image + 800 MiB fixed (measured" in caplog.text and "batch 11" in caplog.text
    )


def test_conf_footprint_wins_over_the_probe():
    def probe():
        raise AssertionError("the footprint set in conf must not be measured")

    memory = {**MEMORY, "per_image_mb": 1000, "fixed_mb": 0}
    assert resolve_batch_size("auto", memory, "cuda", probe=probe, total_mb=10000) == 9


def test_auto_refuses_when_not_one_image_fits_or_nothing_can_measure():
    fake = FakeAllocator(held=500.0, fixed=300.0, per_image=20000.0)
    memory = {**MEMORY, "per_image_mb": None, "fixed_mb": None}
    with pytest.raises(ValueError, match="one image needs"):
        resolve_batch_size(
            "auto", memory, "cuda", probe=lambda: fake.step, peak=fake, total_mb=16384
        )
    with pytest.raises(ValueError, match="has none: set data"):
        resolve_batch_size("auto", memory, "cuda", probe=None, total_mb=16384)
    blind = FakeAllocator(held=500.0, fixed=0.0, per_image=0.0)  # a counter that sees nothing
    with pytest.raises(ValueError, match="no per-image footprint"):
        measure_footprint(blind.step, blind)


def test_real_probe_runs_one_lsap_o_step_per_batch_and_leaves_the_generator_untouched():
    G = init_generator(tiny_arch(), seed=0)
    G.eval().requires_grad_(False)
    anchors = compute_anchors(G, 500, 0)
    objective = build_objective(
        conf_group("loss", "lsap_o", l2=1.0, lpips=0.0, sncd=0.5, noise_reg=1e5),
        generator=G,
        anchors=anchors,
    )
    batches: list[int] = []
    objective.register_forward_pre_hook(lambda m, a: batches.append(a[0].images.shape[0]))
    settings = InversionSettings.from_config(
        OmegaConf.load(Path(config_dir(), "inversion", "w_plus.yaml"))
    )
    before = {k: v.clone() for k, v in G.state_dict().items()}
    step = lsap_o_probe(G, objective, settings.optimize_kwargs(G, w_std=1.0))

    class StepCounter:  # the CPU has no peak counter: count images seen by the objective
        def reset(self) -> None:
            batches.clear()

        def peak_mb(self) -> float:
            return 100.0 + 10.0 * sum(batches)

    rng = torch.random.get_rng_state()
    with torch.no_grad():  # as Lightning makes the loaders: the probe turns gradients on itself
        found = measure_footprint(step, StepCounter())
    assert found == Footprint(per_image_mb=10.0, fixed_mb=100.0)  # one forward per probe step
    assert torch.equal(torch.random.get_rng_state(), rng)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in G.parameters())


def test_lsap_invert_auto_on_cpu_runs_batches_of_cpu_batch(tmp_path, monkeypatch):
    """The wiring through lsap-invert's config: data.batch_size=auto on a CPU run -> batches of
    data.memory.cpu_batch (footprints unset: nothing is measured off CUDA)."""
    from hydra import compose, initialize_config_dir

    from lsap.cli.invert import run
    from lsap.systems.inversion import InversionSystem

    names = make_images(tmp_path / "in", n=3, nested=1, bad=False)
    sizes: list[int] = []
    step = InversionSystem.predict_step

    def spy(self, batch, batch_idx=0):
        sizes.append(len(batch["name"]))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(InversionSystem, "predict_step", spy)
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "invert",
            [
                *FAST,
                "inversion.steps=1",
                f"data.path={tmp_path}/in",
                f"paths.output_dir={tmp_path}/out",
                f"paths.cache_dir={tmp_path}/cache",
                "data.batch_size=auto",
                "data.memory.cpu_batch=2",
                "trainer.accelerator=cpu",
                "metrics.id=null",
            ],
        )
    assert cfg.data.memory.per_image_mb is None  # conf ships no footprint: auto must cope
    run(cfg)
    assert sizes == [2, 1]
    assert sorted(p.stem for p in (tmp_path / "out" / "codes").glob("*.pt")) == sorted(names)


def test_data_module_plans_auto_on_cuda_with_the_modules_probe(tmp_path, monkeypatch):
    """The CUDA branch of the wiring, on a CPU with fakes: the loader's batch is planned on the
    trainer's device from the footprint that the module's memory_probe step shows."""
    from types import SimpleNamespace

    import lsap.inversion.memory as memory_mod
    from lsap.systems.data import InversionDataModule
    from lsap.systems.sharding import InversionPlan

    fake = FakeAllocator(held=500.0, fixed=300.0, per_image=1200.0)
    monkeypatch.setattr(memory_mod, "CudaPeakMemory", lambda device: fake)
    card = SimpleNamespace(total_memory=16384 * 2**20)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: card)
    data = InversionDataModule(
        tmp_path,
        tmp_path / "out",
        32,
        batch_size="auto",
        memory={**MEMORY, "per_image_mb": None, "fixed_mb": None},
        num_workers=0,
        align=False,
    )
    module = SimpleNamespace(memory_probe=lambda: fake.step)
    strategy = SimpleNamespace(root_device=torch.device("cuda", 0))
    data.trainer = SimpleNamespace(
        lightning_module=module, strategy=strategy, global_rank=0, world_size=1
    )
    data.plan = InversionPlan(todo=((str(tmp_path / "a.png"), "a"),), num_images=1, num_done=0)
    loader = data.predict_dataloader()
    assert fake.batches == [1, 2] and loader.batch_size == data.batch_size == 11
