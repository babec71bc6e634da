"""StyleGAN3 generators from NVlabs ``.pkl`` files: architecture from the pickled kwargs, tensors 1:1.

The pickle is read by :mod:`lsap.io.nvlabs_pickle` (nothing from the file runs); here the
``G_ema`` data of a ``training.networks_stylegan3.Generator`` becomes a :class:`StyleGAN3Config`
and a state dict in :class:`lsap.nets.stylegan3.StyleGAN3Generator`'s naming, which is NVlabs' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lsap.io.nvlabs_pickle import flatten_module, init_kwargs
from lsap.nets.stylegan3 import StyleGAN3Config

# NVlabs constructor kwargs (Generator, SynthesisNetwork, SynthesisLayer) -> StyleGAN3Config field.
_SYNTHESIS_KEYS = {
    "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
    "last_stopband_rel", "margin_size", "output_scale", "conv_kernel", "filter_size",
    "lrelu_upsampling", "use_radial_filters", "conv_clamp",
}  # fmt: skip
# Kwargs that do not change the numbers lsap computes (fp16 on CUDA only; training EMA rate).
_IGNORED_KEYS = {"num_fp16_res", "magnitude_ema_beta", "c_dim", "mapping_kwargs"}


def is_stylegan3_net(net: Mapping[str, Any]) -> bool:
    """True for the unpickled data of an NVlabs StyleGAN3 generator: its synthesis network has a
    Fourier-feature ``input`` child (StyleGAN2's has blocks ``b4`` ...), or the class says so."""
    synthesis = (net.get("state") or {}).get("_modules", {}).get("synthesis") or {}
    children = (synthesis.get("state") or {}).get("_modules") or {}
    return "input" in children or "stylegan3" in str(net.get("class_name", "")).lower()


def _number(v: Any) -> Any:
    # numpy scalars -> Python numbers (the config is a plain dataclass).
    return v.item() if hasattr(v, "item") and not isinstance(v, Tensor) else v


def stylegan3_from_pickle(net: Mapping[str, Any]) -> tuple[StyleGAN3Config, dict[str, Tensor]]:
    """Config and state dict of an unpickled NVlabs StyleGAN3 ``G_ema``.

    Raises:
        ValueError: conditional network, or constructor kwargs lsap does not know.
        pickle.UnpicklingError: a submodule that is not a persistent network.
    """
    kw = init_kwargs(net)
    if kw.get("c_dim", 0):
        raise ValueError(f"conditional generator (c_dim={kw['c_dim']}) is not supported")
    unknown = set(kw) - _SYNTHESIS_KEYS - _IGNORED_KEYS - {
        "z_dim", "w_dim", "img_resolution", "img_channels",
    }  # fmt: skip
    if unknown:
        raise ValueError(f"unknown StyleGAN3 constructor arguments {sorted(unknown)}")
    map_kw = dict(kw.get("mapping_kwargs") or {})
    unknown_map = set(map_kw) - {"num_layers", "lr_multiplier", "w_avg_beta"}
    if unknown_map:
        raise ValueError(f"unknown mapping arguments {sorted(unknown_map)}")
    fields: dict[str, Any] = {k: _number(v) for k, v in kw.items() if k in _SYNTHESIS_KEYS}
    fields.update(
        resolution=int(kw["img_resolution"]),
        z_dim=int(kw["z_dim"]),
        w_dim=int(kw["w_dim"]),
        img_channels=int(kw.get("img_channels", 3)),
        n_mlp=int(map_kw.get("num_layers", 2)),
        lr_mlp=float(map_kw.get("lr_multiplier", 0.01)),
    )
    if fields.get("conv_clamp") is not None:
        fields["conv_clamp"] = float(fields["conv_clamp"])
    config = StyleGAN3Config(**fields)
    state = {k: v.float() if v.is_floating_point() else v for k, v in flatten_module(net).items()}
    return config, state


def check_pickle_fits(config: StyleGAN3Config, state: Mapping[str, Tensor]) -> None:
    """Raise ValueError naming the first key whose presence or shape differs from ``config``'s net."""
    from lsap.nets.stylegan3 import StyleGAN3Generator

    ref = {k: tuple(v.shape) for k, v in StyleGAN3Generator(config).state_dict().items()}
    for k, shape in ref.items():
        if k not in state:
            raise ValueError(f"key '{k}' missing (expected shape {list(shape)})")
        if tuple(state[k].shape) != shape:
            raise ValueError(
                f"key '{k}' has shape {list(state[k].shape)}, the architecture expects {list(shape)}"
            )
    extra = sorted(set(state) - set(ref))
    if extra:
        raise ValueError(f"key '{extra[0]}' has no place in the architecture")


__all__ = ["check_pickle_fits", "is_stylegan3_net", "stylegan3_from_pickle"]
