"""Write NVlabs-StyleGAN3-shaped network pickles from an lsap StyleGAN3 generator, for tests.

Same outer format as ``nvlabs_format`` (persistent objects, ``EasyDict`` kwargs), with the numpy
arrays and scalars StyleGAN3 modules carry among their attributes. ``smuggle`` puts any object
into a layer's attributes, to check the loader refuses what it must.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import torch
from nvlabs_format import _Persistent, fake_nvlabs_modules

_BUFFERS = {"transform", "freqs", "phases", "magnitude_ema", "up_filter", "down_filter", "w_avg"}


def _node(module: torch.nn.Module, kwargs, EasyDict, extra_attrs) -> _Persistent:
    params = collections.OrderedDict(
        (n, torch.nn.Parameter(p.detach().clone(), requires_grad=False))
        for n, p in module.named_parameters(recurse=False)
    )
    buffers = collections.OrderedDict(
        (n, None if b is None else b.detach().clone())
        for n, b in module._buffers.items()
        if n in _BUFFERS
    )
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_modules": collections.OrderedDict(
            (n, _node(m, EasyDict(), EasyDict, {})) for n, m in module.named_children()
        ),
        "_init_args": (),
        "_init_kwargs": kwargs,
        "weight_gain": np.float64(0.25),
        "use_fp16": np.bool_(False),
        "size": np.broadcast_to(np.asarray(36), [2]),
        **extra_attrs,
    }
    return _Persistent(
        {
            "type": "class",
            "version": 6,
            "module_src": "class SynthesisInput: pass\nraise SystemExit('executed!')\n",
            "class_name": "training.networks_stylegan3.Generator",
            "state": state,
        }
    )


def write_stylegan3_pickle(G, path: str | Path, *, smuggle=None) -> Path:
    """Pickle an lsap ``StyleGAN3Generator`` the way NVlabs stylegan3 stores ``G_ema``."""
    c = G.config
    with fake_nvlabs_modules() as EasyDict:
        kwargs = EasyDict(
            z_dim=c.z_dim, w_dim=c.w_dim, c_dim=0, img_resolution=c.resolution,
            img_channels=c.img_channels,
            mapping_kwargs=EasyDict(num_layers=c.n_mlp, lr_multiplier=c.lr_mlp),
            channel_base=c.channel_base, channel_max=c.channel_max, num_layers=c.num_layers,
            num_critical=c.num_critical, margin_size=c.margin_size, conv_kernel=c.conv_kernel,
            use_radial_filters=c.use_radial_filters, conv_clamp=c.conv_clamp, num_fp16_res=4,
        )  # fmt: skip
        net = _node(G, kwargs, EasyDict, {} if smuggle is None else {"in_size": smuggle})
        with open(path, "wb") as f:
            pickle.dump({"G": None, "D": None, "G_ema": net, "augment_pipe": None}, f, protocol=4)
    return Path(path)
