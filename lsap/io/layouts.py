"""Parameter-name layouts of the generators users own, mapped one tensor per tensor onto lsap's.

Each layout is a table of ``(lsap key, source key, reshape kind)`` built from the sizes read off the
source tensors. Converting checks that every expected source key is present and that nothing is
left over, so a checkpoint of another architecture fails loudly instead of loading half-way.
Conversions work on any tensors, including ``meta`` tensors (shape checks without memory).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from lsap.nets.ops import make_filter
from lsap.nets.stylegan2 import GeneratorConfig

# Reshape kinds: how a source tensor becomes lsap's, and back.
_TO_LSAP = {
    "same": lambda t: t,
    "lead1": lambda t: t[0],  # [1, *shape] -> shape
    "scalar": lambda t: t.reshape(()),  # [1] -> []
    "rgb_bias": lambda t: t.reshape(-1),  # [1, 3, 1, 1] -> [3]
    "noise": lambda t: t[0, 0],  # [1, 1, R, R] -> [R, R]
}
_FROM_LSAP = {
    "same": lambda t: t,
    "lead1": lambda t: t.unsqueeze(0),
    "scalar": lambda t: t.reshape(1),
    "rgb_bias": lambda t: t.reshape(1, -1, 1, 1),
    "noise": lambda t: t[None, None],
}


@dataclass(frozen=True)
class Entry:
    ours: str
    theirs: str
    kind: str = "same"


class LayoutError(ValueError):
    """A state dict does not follow the expected layout (message names the key)."""


def _count(keys: Iterable[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(1 for k in keys if rx.fullmatch(k))


def _strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def strip_ddp(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a ``module.`` prefix that DataParallel/DDP wrappers add to every key."""
    if state and all(k.startswith("module.") for k in state):
        return _strip_prefix(state, "module.")
    return dict(state)


# -- rosinality stylegan2-pytorch -------------------------------------------------------------


def is_rosinality(state: Mapping[str, Tensor]) -> bool:
    return "input.input" in state and "conv1.conv.weight" in state


def rosinality_table(n_mlp: int, n_res: int) -> list[Entry]:
    """Entries for a rosinality ``g_ema`` with ``n_mlp`` mapping layers and ``n_res`` resolutions."""
    t = []
    for k in range(n_mlp):
        t += [Entry(f"mapping.fc{k}.{p}", f"style.{k + 1}.{p}") for p in ("weight", "bias")]
    t.append(Entry("synthesis.const", "input.input", "lead1"))
    for i in range(2 * n_res - 1):
        src = "conv1" if i == 0 else f"convs.{i - 1}"
        dst = f"synthesis.convs.{i}"
        t += [
            Entry(f"{dst}.weight", f"{src}.conv.weight", "lead1"),
            Entry(f"{dst}.affine.weight", f"{src}.conv.modulation.weight"),
            Entry(f"{dst}.affine.bias", f"{src}.conv.modulation.bias"),
            Entry(f"{dst}.noise_strength", f"{src}.noise.weight", "scalar"),
            Entry(f"{dst}.bias", f"{src}.activate.bias"),
            Entry(f"{dst}.noise_const", f"noises.noise_{i}", "noise"),
        ]
    for j in range(n_res):
        src = "to_rgb1" if j == 0 else f"to_rgbs.{j - 1}"
        dst = f"synthesis.torgbs.{j}"
        t += [
            Entry(f"{dst}.weight", f"{src}.conv.weight", "lead1"),
            Entry(f"{dst}.affine.weight", f"{src}.conv.modulation.weight"),
            Entry(f"{dst}.affine.bias", f"{src}.conv.modulation.bias"),
            Entry(f"{dst}.bias", f"{src}.bias", "rgb_bias"),
        ]
    return t


def rosinality_derived(n_res: int) -> dict[str, Tensor]:
    """Buffers rosinality derives from the architecture: blur / upsample kernels (filter * 4)."""
    k = make_filter() * 4
    out = {f"convs.{2 * j}.conv.blur.kernel": k for j in range(n_res - 1)}
    out.update({f"to_rgbs.{j}.upsample.kernel": k for j in range(n_res - 1)})
    return out


def rosinality_sizes(state: Mapping[str, Tensor]) -> tuple[int, int]:
    """(n_mlp, n_res) read off a rosinality state dict."""
    n_mlp = _count(state, r"style\.\d+\.weight")
    n_res = 1 + _count(state, r"to_rgbs\.\d+\.conv\.weight")
    return n_mlp, n_res


# -- NVlabs stylegan2-ada-pytorch / stylegan3 (StyleGAN2 networks) ----------------------------


def is_nvlabs(state: Mapping[str, Tensor]) -> bool:
    return "synthesis.b4.const" in state and "mapping.fc0.weight" in state


def nvlabs_table(n_mlp: int, n_res: int, *, use_noise: bool = True) -> list[Entry]:
    t = []
    for k in range(n_mlp):
        t += [Entry(f"mapping.fc{k}.{p}", f"mapping.fc{k}.{p}") for p in ("weight", "bias")]
    t.append(Entry("mapping.w_avg", "mapping.w_avg"))
    t.append(Entry("synthesis.const", "synthesis.b4.const"))
    conv_params = ["weight", "bias", "affine.weight", "affine.bias"]
    if use_noise:
        conv_params += ["noise_strength", "noise_const"]
    for i in range(2 * n_res - 1):
        if i == 0:
            src = "synthesis.b4.conv1"
        else:
            res = 4 * 2 ** ((i + 1) // 2)
            src = f"synthesis.b{res}.conv{0 if i % 2 else 1}"
        t += [Entry(f"synthesis.convs.{i}.{p}", f"{src}.{p}") for p in conv_params]
    for j in range(n_res):
        src = f"synthesis.b{4 * 2**j}.torgb"
        t += [Entry(f"synthesis.torgbs.{j}.{p}", f"{src}.{p}") for p in conv_params[:4]]
    return t


def nvlabs_derived(n_res: int) -> dict[str, Tensor]:
    """NVlabs ``resample_filter`` buffers (the normalised [1,3,3,1] filter) on blocks and layers."""
    f = make_filter()
    out = {}
    for j in range(n_res):
        b = f"synthesis.b{4 * 2**j}"
        out[f"{b}.resample_filter"] = f
        out[f"{b}.conv1.resample_filter"] = f
        if j:
            out[f"{b}.conv0.resample_filter"] = f
    return out


def nvlabs_sizes(state: Mapping[str, Tensor]) -> tuple[int, int]:
    n_mlp = _count(state, r"mapping\.fc\d+\.weight")
    n_res = _count(state, r"synthesis\.b\d+\.torgb\.weight")
    return n_mlp, n_res


# -- conversion --------------------------------------------------------------------------------


def convert(
    source: Mapping[str, Tensor],
    table: list[Entry],
    derived: Mapping[str, Tensor],
    *,
    ignore: Iterable[str] = (),
) -> tuple[dict[str, Tensor], dict[str, Entry]]:
    """Map a source state dict onto lsap's names.

    Args:
        source: the file's state dict.
        table: entries from ``rosinality_table`` / ``nvlabs_table``.
        derived: source buffers that lsap recomputes; they must match the standard filter.
        ignore: further source keys to skip silently.

    Returns:
        (state dict in lsap's layout, {lsap key: its table entry}).

    Raises:
        LayoutError naming the first missing, unexpected or non-standard key.
    """
    out, names = {}, {}
    for e in table:
        if e.theirs not in source:
            raise LayoutError(f"missing key '{e.theirs}'")
        out[e.ours] = _TO_LSAP[e.kind](source[e.theirs])
        names[e.ours] = e
    used = {e.theirs for e in table} | set(ignore)
    for k, ref in derived.items():
        if k in source:
            used.add(k)
            t = source[k]
            if t.device.type != "meta" and (
                t.shape != ref.shape or not torch.allclose(t.float().cpu(), ref, atol=1e-6)
            ):
                raise LayoutError(f"'{k}' is not the [1,3,3,1] resampling filter lsap implements")
    extra = sorted(set(source) - used)
    if extra:
        shown = ", ".join(f"'{k}'" for k in extra[:5])
        raise LayoutError(f"unexpected keys {shown}{' ...' if len(extra) > 5 else ''}")
    return out, names


def to_source_shape(shape: Iterable[int], kind: str) -> list[int]:
    """The shape a tensor of lsap shape ``shape`` has in the source layout (for messages)."""
    return list(_FROM_LSAP[kind](torch.empty(*shape, device="meta")).shape)


def unconvert(state: Mapping[str, Tensor], table: list[Entry]) -> dict[str, Tensor]:
    """Inverse of :func:`convert` (lsap layout -> source layout), without derived buffers."""
    return {e.theirs: _FROM_LSAP[e.kind](state[e.ours]) for e in table}


def infer_config(
    state: Mapping[str, Tensor], *, lr_mlp: float = 0.01, conv_clamp: float | None = None
) -> GeneratorConfig:
    """Read a :class:`GeneratorConfig` off tensors in lsap's layout.

    Raises:
        LayoutError if the channel counts do not follow ``min(channel_max, channel_base // res)``.
    """
    n_res = _count(state, r"synthesis\.torgbs\.\d+\.weight")
    n_mlp = _count(state, r"mapping\.fc\d+\.weight")
    if n_res < 1 or n_mlp < 1:
        raise LayoutError("no synthesis or mapping layers found")
    resolution = 4 * 2 ** (n_res - 1)
    w_dim, z_dim = state["mapping.fc0.weight"].shape[0], state["mapping.fc0.weight"].shape[1]
    channels = {4: state["synthesis.const"].shape[0]}
    for j in range(1, n_res):
        channels[4 * 2**j] = state[f"synthesis.convs.{2 * j}.weight"].shape[0]
    channel_max = max(channels.values())
    below = [(r, c) for r, c in channels.items() if c < channel_max]
    channel_base = below[0][0] * below[0][1] if below else channel_max * resolution
    cfg = GeneratorConfig(
        resolution=resolution,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        n_mlp=n_mlp,
        lr_mlp=lr_mlp,
        channel_base=int(channel_base),
        channel_max=int(channel_max),
        conv_clamp=conv_clamp,
    )
    for r, c in channels.items():
        if cfg.channels(r) != c:
            raise LayoutError(
                f"channel counts {channels} do not follow min(channel_max, channel_base // res)"
            )
    return cfg
