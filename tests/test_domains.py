"""The real domains as configs: each `generator=<domain>` composes for every command, describes the
published network, and switches the id slot to the domain's similarity network by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsap.config import compose, config_dir, group_options, plain
from lsap.nets.generators import config_from_dict

# The published networks (file names as released; StyleGAN2 config-f and the stylegan2-ada
# paper512/paper1024 configs: channel_base 32768, i.e. channels 512 up to 64 px, then halving).
CONFIG_F_CHANNELS = {
    4: 512,
    8: 512,
    16: 512,
    32: 512,
    64: 512,
    128: 256,
    256: 128,
    512: 64,
    1024: 32,
}
DOMAINS = {
    # name: (file, resolution, num_ws, mapping layers, valid region [top, left, h, w], id backend)
    "lsun_car": ("stylegan2-car-config-f.pt", 512, 16, 8, [64, 0, 384, 512], "moco"),
    "lsun_church": ("stylegan2-church-config-f.pt", 256, 14, 8, None, "moco"),
    "lsun_horse": ("stylegan2-horse-config-f.pt", 256, 14, 8, None, "moco"),
    "lsun_cat": ("stylegan2-cat-config-f.pt", 256, 14, 8, None, "moco"),  # e4e's cats domain
    "afhq_cat": ("afhqcat.pkl", 512, 16, 8, None, "moco"),
    "afhq_dog": ("afhqdog.pkl", 512, 16, 8, None, "moco"),
    "metfaces": ("metfaces.pkl", 1024, 18, 8, None, "arcface"),
}
ID_WEIGHTS = {"moco": "moco_v2_800ep_pretrain.pt", "arcface": "model_ir_se50.pth"}
CKPT = "paths.checkpoint_dir=/ckpt"


def _id(node) -> dict:
    return plain(node)


@pytest.mark.parametrize("domain", DOMAINS)
def test_generator_entry_is_the_published_network(domain):
    file, resolution, num_ws, n_mlp, crop, _ = DOMAINS[domain]
    cfg = compose("invert", ["data.path=photos", CKPT], generator=domain)
    g = plain(cfg.generator)
    assert g["path"] == f"/ckpt/{file}"
    arch = config_from_dict(g["arch"])
    assert (arch.resolution, arch.num_ws, arch.n_mlp, arch.z_dim, arch.w_dim) == (
        resolution,
        num_ws,
        n_mlp,
        512,
        512,
    )
    assert {r: arch.channels(r) for r in arch.resolutions} == {
        r: c for r, c in CONFIG_F_CHANNELS.items() if r <= resolution
    }
    assert g.get("crop") == crop
    if crop is not None:  # the box the valid-region code accepts, at the encoders' 256 px too
        from lsap.nets.crop import ValidRegion

        region = ValidRegion.from_config(crop, resolution)
        assert region.box_at(256) == tuple(v * 256 // resolution for v in crop)  # e4e: 32:224
    # NVlabs stylegan2-ada pickles clamp activations at 256; the TF conversions do not
    assert arch.conv_clamp == (256 if file.endswith(".pkl") else None)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_command_picks_the_domains_similarity_network(domain):
    backend = DOMAINS[domain][-1]
    want = {
        "backend": backend,
        "weights": f"/ckpt/{ID_WEIGHTS[backend]}",
        "crop": backend != "moco",
    }
    inv = compose("invert", ["data.path=photos", CKPT], generator=domain)
    assert _id(inv.loss.options.id) == want and _id(inv.metrics.id) == want
    train = compose("train", [CKPT], generator=domain)
    assert _id(train.loss.options.id) == want
    assert _id(compose("eval", [CKPT], generator=domain).metrics.id) == want
    demo = compose("demo", [CKPT], generator=domain)
    assert _id(demo.loss.options.id) == want and _id(demo.metrics.id) == want
    assert demo.data.align == (backend != "moco")  # face alignment only for faces
    edit = compose("edit", ["codes=run", CKPT], generator=domain)  # edits need no id network
    assert plain(edit.generator) == plain(inv.generator)


def test_face_generators_keep_the_face_defaults():
    for g in ("ffhq", "toy32"):
        assert compose("invert", ["data.path=x"], generator=g).loss.options.id.backend == "facenet"
        assert compose("eval", [], generator=g).metrics.id.backend == "facenet"
    assert compose("train", ["experiment=lsap_e_ffhq"]).loss.options.id.backend == "arcface"


def test_overrides_still_win_over_the_domain():
    cfg = compose("invert", ["data.path=x", "loss.options.id.weights=random"], generator="lsun_car")
    assert _id(cfg.metrics.id) == {"backend": "moco", "weights": "random", "crop": False}
    cfg = compose("train", ["experiment=lsap_e_ffhq", "generator=lsun_church"])
    assert cfg.loss.options.id.backend == "moco"  # the experiment's generator override counts
    cfg = compose("eval", ["similarity@metrics.id=arcface"], generator="lsun_horse")
    assert cfg.metrics.id.backend == "arcface"


def test_similarity_entries_name_existing_generators():
    """conf/similarity/<generator>.yaml is picked by name: a misspelt name would silently fall
    back to the face defaults."""
    bases = {"moco", "arcface"}
    entries = set(group_options("similarity")) - bases
    assert set(DOMAINS) <= entries
    assert entries <= set(group_options("generator")), entries - set(group_options("generator"))
    for name in entries:
        text = Path(config_dir(), "similarity", f"{name}.yaml").read_text()
        assert sum(f"- {b}" in text for b in bases) == 1, name


def test_composed_domain_config_builds_the_moco_term():
    """The train config of a non-face domain builds a working MoCo similarity term (stand-in)."""
    from lsap.losses import TERM_NAMES, LossInputs, build_objective

    cfg = compose("train", ["loss.options.id.weights=random"], generator="lsun_church")
    loss = plain(cfg.loss)
    assert loss["id"] > 0
    only_id = {k: 0.0 for k in TERM_NAMES if k != "id"}  # the id term alone
    objective = build_objective({**loss, **only_id})
    term = objective.terms["id"]
    assert term.embedder.backend == "moco"
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    v = term(LossInputs(images=x, targets=x.flip(0)))
    assert v.shape == (2,) and (v > 0).all()
    assert term(LossInputs(images=x, targets=x)).abs().max() < 1e-5


# Training images as the domains' papers use them (folders under paths.data_dir).
DATA = {
    "lsun_car": ("stanford_cars/train", "stanford_cars/test"),  # e4e: Stanford Cars
    "lsun_church": ("lsun_church/train", "lsun_church/val"),  # LSUN church_outdoor
    "lsun_horse": ("lsun_horse/train", "lsun_horse/test"),  # LSUN has no horse/cat test split
    "lsun_cat": ("lsun_cat/train", "lsun_cat/test"),
    "afhq_cat": ("afhq/train/cat", "afhq/val/cat"),  # StarGAN v2's AFHQ splits
    "afhq_dog": ("afhq/train/dog", "afhq/val/dog"),
    "metfaces": ("metfaces/train", "metfaces/test"),
}


@pytest.mark.parametrize("domain", DATA)
def test_train_composes_with_the_domains_data(domain):
    train, val = DATA[domain]
    cfg = compose("train", [f"data={domain}", "paths.data_dir=/data"], generator=domain)
    data = plain(cfg.data)
    assert data["_target_"] == "lsap.systems.datamodule.ImageFolderDataModule"
    assert (data["train_path"], data["val_path"]) == (f"/data/{train}", f"/data/{val}")
    assert data["size"] == 256 and data["hflip"] == 0.5  # the encoders' input, pSp/e4e's flips
    assert cfg.generator.arch.resolution == DOMAINS[domain][1]
    assert cfg.loss.options.id.backend == DOMAINS[domain][-1]


def test_cars_named_ganspace_edits_are_e4es(tmp_path):
    """editing=ganspace_cars: e4e's cars edits (component, layers, strength) on its cars PCA file
    ({mean [1, 512], comp [K, 1, 512], std [K]}), absolute strengths on the named w+ layers."""
    from types import SimpleNamespace

    from lsap.editing import build_edits

    g = torch.Generator().manual_seed(0)
    comp = torch.linalg.qr(torch.randn(512, 64, generator=g))[0].T  # [64, 512] orthonormal
    pca = {
        "mean": torch.randn(1, 512, generator=g),
        "comp": comp[:, None],
        "std": torch.rand(64) + 0.5,
    }
    torch.save(pca, tmp_path / "cars_pca.pt")
    cfg = compose(
        "edit",
        [
            "codes=run",
            "editing=ganspace_cars",
            f"editing.ganspace.pca_file={tmp_path / 'cars_pca.pt'}",
        ],
        generator="lsun_car",
    )
    G = SimpleNamespace(num_ws=16, w_dim=512)  # lsun_car's sizes; a PCA file needs no samples
    specs = {s.name: s for s in build_edits(plain(cfg.editing), G)}
    want = {"viewpoint": (0, 0, 5, [2.0, -2.0]), "cube": (16, 3, 6, [25.0])}
    want |= {"color": (22, 9, 11, [-8.0]), "grass": (41, 9, 11, [-18.0])}
    assert set(specs) == {f"ganspace/{k}" for k in want}
    w = torch.randn(2, 16, 512, generator=g)
    for name, (c, start, end, factors) in want.items():
        spec = specs[f"ganspace/{name}"]
        assert list(spec.factors) == factors
        out = spec.edit(w, factors[0])
        coord = ((out[:, start:end] - pca["mean"]) @ comp[c]) / pca["std"][c]
        torch.testing.assert_close(coord, torch.full_like(coord, factors[0]), atol=1e-3, rtol=0)
        changed = (out != w).any(dim=2).any(dim=0)  # [16]: the w+ layers the edit moved
        assert changed.nonzero().flatten().tolist() == list(range(start, end)), name


@pytest.mark.slow
def test_invert_with_the_moco_term_lowers_it_and_reports_moco_id(tmp_path):
    """lsap-invert with a domain's MoCo id term (the stand-in, on the tiny generator with a
    non-square valid region): the term falls over the steps, and the per-image id column is
    MoCo's cosine (shared with the loss)."""
    import csv

    from invert_helpers import FAST, make_images
    from invert_helpers import compose as compose_invert

    from lsap.cli.invert import run

    make_images(tmp_path / "in", 2, nested=0, bad=False)
    cfg = compose_invert(
        *FAST,
        "generator=tiny_wide",  # a 32 x 24 valid region, as cars: the term sees only that
        "similarity@loss.options.id=moco",  # what generator=<non-face domain> picks by itself
        "loss.options.id.weights=random",
        "loss.id=1.0",  # the id term alone: no pixel, alignment or latent-noise pull
        "loss.l2=0",
        "loss.sncd=0",
        "inversion.schedule.noise_factor=0",
        "inversion.steps=5",
        "inversion.lr=0.02",
        f"data.path={tmp_path}/in",
        f"paths.output_dir={tmp_path}/out",
        f"paths.cache_dir={tmp_path}/cache",
    )
    assert cfg.metrics.id.backend == "moco"
    run(cfg)
    rows = list(csv.DictReader((tmp_path / "out" / "csv" / "metrics.csv").open()))
    for name in ("img0", "img1"):
        curve = [
            float(r[f"invert/loss/id/{name}"]) for r in rows if r.get(f"invert/loss/id/{name}")
        ]
        assert len(curve) == 5 and curve[-1] < 0.8 * curve[0], (name, curve)
    results = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert all(0.5 < float(r["id"]) <= 1.0 for r in results), results
