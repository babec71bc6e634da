"""Write NVlabs-style network pickles from an lsap generator, for tests.

The real format pickles each network as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``.
We register stand-in modules under those names only while dumping, so the file references the same
globals a real NVlabs pickle does; loading it must never need them.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from pathlib import Path

import torch

from lsap.io import layouts


class _Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def fake_nvlabs_modules():
    """Temporarily provide ``torch_utils.persistence`` and ``dnnlib.util`` for pickling."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called by lsap
        raise AssertionError("lsap must not call the NVlabs reconstruction hook")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    pkgs = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {k: sys.modules.get(k) for k in pkgs}
    sys.modules.update(pkgs)
    try:
        yield util.EasyDict
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _tree(flat, EasyDict, init_kwargs, class_name):
    root = {"params": {}, "children": {}}
    for key, t in flat.items():
        node = root
        *path, leaf = key.split(".")
        for p in path:
            node = node["children"].setdefault(p, {"params": {}, "children": {}})
        node["params"][leaf] = t

    def build(node, kwargs=None, cls="training.networks.Layer"):
        params, buffers = collections.OrderedDict(), collections.OrderedDict()
        for name, t in node["params"].items():
            if name in ("noise_const", "w_avg", "resample_filter"):
                buffers[name] = t.clone()
            else:
                params[name] = torch.nn.Parameter(t.clone(), requires_grad=False)
        state = {
            "training": False,
            "_parameters": params,
            "_buffers": buffers,
            "_modules": collections.OrderedDict((k, build(v)) for k, v in node["children"].items()),
            "_init_args": (),
            "_init_kwargs": kwargs if kwargs is not None else EasyDict(),
            "weight_gain": 0.5,
        }
        return _Persistent(
            {
                "type": "class",
                "version": 6,
                "module_src": "raise SystemExit('executed!')\n",
                "class_name": cls,
                "state": state,
            }
        )

    return build(root, init_kwargs, class_name)


def write_nvlabs_pickle(
    G, path: str | Path, *, class_name="training.networks.Generator", extra=None
):
    """Pickle ``G`` the way stylegan2-ada-pytorch stores ``G_ema`` (plus optional extra entries)."""
    n_res = len(G.synthesis.torgbs)
    table = layouts.nvlabs_table(G.config.n_mlp, n_res)
    flat = layouts.unconvert({k: v.detach() for k, v in G.state_dict().items()}, table)
    flat.update(layouts.nvlabs_derived(n_res))
    with fake_nvlabs_modules() as EasyDict:
        kwargs = EasyDict(
            z_dim=G.z_dim,
            c_dim=0,
            w_dim=G.w_dim,
            img_resolution=G.resolution,
            img_channels=3,
            mapping_kwargs=EasyDict(num_layers=G.config.n_mlp, lr_multiplier=G.config.lr_mlp),
            synthesis_kwargs=EasyDict(
                channel_base=G.config.channel_base,
                channel_max=G.config.channel_max,
                conv_clamp=G.config.conv_clamp,
                num_fp16_res=0,
                architecture="skip",
            ),
        )
        net = _tree(flat, EasyDict, kwargs, class_name)
        data = {
            "G": net,
            "D": None,
            "G_ema": net,
            "training_set_kwargs": EasyDict(resolution=G.resolution),
        }
        data.update(extra or {})
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return Path(path)
