"""StyleGAN3 rows of ``bench/generator.py``: lsap's generator vs NVlabs' reference path, same weights.

``--stylegan3-repo`` is a work tree of NVlabs/stylegan3. Its network is built there (seed 0) and
its state dict loaded into lsap's ``StyleGAN3Generator`` (the tensor names are the same), so both
rows run the same weights. On CPU NVlabs' custom ops take their reference PyTorch paths
(``filtered_lrelu`` / ``upfirdn2d`` / ``bias_act`` ``impl='ref'``): what users without the CUDA
extension get. Its code imports ``pkg_resources`` only for ``parse_version``; where setuptools no
longer ships it, a stand-in module with ``packaging.version.parse`` is registered for the run.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch


def nvlabs_kwargs(args) -> dict:
    """NVlabs ``train.py`` generator kwargs for ``--sg3-config`` (T or R) at ``--resolution``."""
    kw = dict(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=args.resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        channel_base=32768,
        channel_max=512,
        magnitude_ema_beta=0.5 ** (32 / 20e3),
    )
    if args.sg3_config.upper() == "R":
        kw.update(conv_kernel=1, channel_base=65536, channel_max=1024, use_radial_filters=True)
    return kw


def _import_nvlabs(repo: str):
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    sys.path.insert(0, str(Path(repo).resolve()))
    from torch_utils import custom_ops

    def _no_plugin(*a, **k):
        raise RuntimeError("NVlabs CUDA plugin requested on the CPU reference path")

    custom_ops.get_plugin = _no_plugin
    from training import networks_stylegan3

    return networks_stylegan3


def build(impl: str, args) -> tuple[torch.nn.Module, callable, int]:
    """``impl`` 'lsap-sg3' or 'nvlabs-sg3' -> (module, synth(w_plus), num_ws)."""
    from lsap.nets.stylegan3 import StyleGAN3Config, StyleGAN3Generator

    kw = nvlabs_kwargs(args)
    if args.stylegan3_repo:
        torch.manual_seed(0)
        ref = _import_nvlabs(args.stylegan3_repo).Generator(**kw).eval()
        if impl == "nvlabs-sg3":
            return ref, lambda w: ref.synthesis(w, noise_mode="const", force_fp32=True), ref.num_ws
    elif impl == "nvlabs-sg3":
        raise ValueError("nvlabs-sg3 needs --stylegan3-repo")
    cfg = StyleGAN3Config.from_dict(
        {
            "resolution": kw["img_resolution"],
            "n_mlp": 2,
            "config": args.sg3_config,
            "channel_base": kw["channel_base"],
            "channel_max": kw["channel_max"],
        }
    )
    G = StyleGAN3Generator(cfg).eval()
    if args.stylegan3_repo:
        G.load_state_dict(ref.state_dict(), strict=True)
    return G, lambda w: G.synthesis(w, noise_mode="const"), G.num_ws
