"""Load and save generators: rosinality `.pt`, NVlabs `.pkl`, pSp/e4e/GANInverter, lsap's own.

Everything is read weights-only: ``torch.load(weights_only=True)`` for torch files (with only
``argparse.Namespace`` allowed, for rosinality training checkpoints), and a restricted unpickler for
NVlabs pickles (``lsap.io.nvlabs_pickle``). Every loaded generator carries the sha256 of its file.
"""

from __future__ import annotations

import argparse
import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.errors import CheckpointError, refusal_reason
from lsap.core.hashing import file_sha256, tensors_sha256
from lsap.io import layouts
from lsap.io.generator_delta import (
    check_delta,
    delta_base_file,
    generator_from_delta,
    is_generator_delta,
)
from lsap.io.nvlabs_pickle import flatten_module, init_kwargs, is_persistent, safe_load_pickle
from lsap.io.stylegan3_pickle import check_pickle_fits, is_stylegan3_net, stylegan3_from_pickle
from lsap.nets.crop import ValidRegion
from lsap.nets.generators import AnyConfig, AnyGenerator, build_generator, config_from_dict
from lsap.nets.sampling import iter_w
from lsap.nets.stylegan2 import Generator, GeneratorConfig
from lsap.nets.stylegan3 import StyleGAN3Config, randomize_

LSAP_GENERATOR_FORMAT = "lsap.generator"
FORMAT_VERSION = 1
W_AVG_SAMPLES = 10_000  # samples used to estimate w_avg when a file has no latent_avg


@dataclass
class GeneratorState:
    """A generator read from a file, in lsap's layout, before building the module."""

    config: AnyConfig
    state: dict[str, Tensor]
    source_format: str  # "lsap", "rosinality", "psp/e4e", "ganinverter", "nvlabs[-stylegan3]"
    entries: dict[str, layouts.Entry] = field(default_factory=dict)  # lsap key -> file entry
    prefix: str = ""  # where the generator sits in the file, e.g. "g_ema."
    has_w_avg: bool = True


def read_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed (rosinality ``args``)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            path, f"refused by the weights-only loader ({refusal_reason(e)})"
        ) from None
    except Exception as e:  # corrupt files raise all kinds of errors inside torch.load
        raise CheckpointError(
            path, f"not a readable torch file ({type(e).__name__}: {e})"
        ) from None


def _is_nvlabs_pickle(path: Path) -> bool:
    if zipfile.is_zipfile(path):
        return False
    if path.suffix == ".pkl":
        return True
    with open(path, "rb") as f:
        head = f.read(4096)
    return b"torch_utils.persistence" in head or b"_reconstruct_persistent_obj" in head


def read_generator_state(path: str | Path) -> GeneratorState:
    """Read the generator weights in ``path`` into lsap's layout (no module is built).

    Raises:
        CheckpointError: missing file, unsafe or unreadable content, unknown layout.
    """
    from lsap.assets import resolve

    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if _is_nvlabs_pickle(path):
        return _read_nvlabs(path)
    return _state_from_loaded(path, read_torch_file(path))


def _state_from_loaded(path: Path, obj: Any) -> GeneratorState:
    if is_generator_delta(obj):
        raise CheckpointError(
            path, "is a generator delta; load it with lsap.load_generator(path, base=...)"
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(obj).__name__}")
    try:
        return state_from_checkpoint(obj)
    except layouts.LayoutError as e:
        raise CheckpointError(path, str(e)) from None
    except _UnknownLayoutError:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(
            path,
            f"no generator found (top-level keys: {keys}); expected rosinality {{'g_ema', "
            "'latent_avg'}, a pSp/e4e/GANInverter checkpoint with a decoder, or an lsap generator",
        ) from None


class _UnknownLayoutError(Exception):
    pass


def _w_avg_from(latent_avg: Any, w_dim: int) -> Tensor | None:
    if latent_avg is None:
        return None
    t = torch.as_tensor(latent_avg).float()
    if t.ndim >= 1 and t.shape[-1] == w_dim:
        # [512], [1, 512] or [num_ws, 512] (pSp/e4e repeat it per layer): average the rows.
        return t.reshape(-1, w_dim).mean(0)
    raise layouts.LayoutError(f"latent_avg has shape {list(t.shape)}, expected [..., {w_dim}]")


def _from_rosinality(
    sd: Mapping[str, Tensor], latent_avg: Any, fmt: str, prefix: str = ""
) -> GeneratorState:
    sd = layouts.strip_ddp(sd)
    n_mlp, n_res = layouts.rosinality_sizes(sd)
    table = layouts.rosinality_table(n_mlp, n_res)
    state, entries = layouts.convert(sd, table, layouts.rosinality_derived(n_res))
    w_dim = state["mapping.fc0.weight"].shape[0]
    w_avg = _w_avg_from(latent_avg, w_dim)
    state["mapping.w_avg"] = w_avg if w_avg is not None else torch.zeros(w_dim)
    return GeneratorState(
        layouts.infer_config(state), state, fmt, entries, prefix, has_w_avg=w_avg is not None
    )


def state_from_checkpoint(obj: Mapping[str, Any]) -> GeneratorState:
    """Find the generator in a loaded torch checkpoint dict and convert it to lsap's layout.

    Raises:
        layouts.LayoutError: the generator's tensors do not follow the expected layout.
        _UnknownLayoutError: no generator in ``obj``.
    """
    if obj.get("format") == LSAP_GENERATOR_FORMAT:
        cfg = config_from_dict(obj["config"])
        # Files may store fp16 (shipped assets); the generator always computes in float32.
        state = {k: v.float() for k, v in obj["state_dict"].items()}
        return GeneratorState(cfg, state, "lsap")
    if "g_ema" in obj:  # rosinality release or training checkpoint
        return _from_rosinality(obj["g_ema"], obj.get("latent_avg"), "rosinality", "g_ema.")
    if isinstance(obj.get("state_dict"), Mapping):  # pSp / e4e release
        dec = layouts._strip_prefix(obj["state_dict"], "decoder.")
        if dec:
            return _from_rosinality(dec, obj.get("latent_avg"), "psp/e4e", "state_dict.decoder.")
    if isinstance(obj.get("decoder"), Mapping):  # GANInverter / LSAP reference toolbox
        enc = obj.get("encoder") if isinstance(obj.get("encoder"), Mapping) else {}
        latent_avg = obj.get("latent_avg", enc.get("latent_avg"))
        return _from_rosinality(obj["decoder"], latent_avg, "ganinverter", "decoder.")
    if layouts.is_rosinality(layouts.strip_ddp(obj)):  # a bare g_ema state dict
        return _from_rosinality(obj, obj.get("latent_avg"), "rosinality")
    raise _UnknownLayoutError


def _read_nvlabs(path: Path) -> GeneratorState:
    try:
        data = safe_load_pickle(path)
    except pickle.UnpicklingError as e:
        raise CheckpointError(path, f"unsafe or unsupported pickle: {e}") from None
    except Exception as e:  # truncated/corrupt pickles raise many kinds of errors
        raise CheckpointError(path, f"not a readable pickle ({type(e).__name__}: {e})") from None
    net = data.get("G_ema") if isinstance(data, Mapping) else None
    if not is_persistent(net):
        raise CheckpointError(path, "no NVlabs network under 'G_ema'")
    if is_stylegan3_net(net):
        try:
            config, state = stylegan3_from_pickle(net)
            check_pickle_fits(config, state)
        except (ValueError, pickle.UnpicklingError) as e:
            raise CheckpointError(path, f"G_ema (StyleGAN3): {e}") from None
        return GeneratorState(config, state, "nvlabs-stylegan3", prefix="G_ema.")
    kw = init_kwargs(net)
    synth_kw = dict(kw.get("synthesis_kwargs") or {})
    map_kw = dict(kw.get("mapping_kwargs") or {})
    if kw.get("c_dim", 0):
        raise CheckpointError(path, f"conditional generator (c_dim={kw['c_dim']}) is not supported")
    if synth_kw.get("architecture", "skip") != "skip":
        raise CheckpointError(
            path,
            f"synthesis architecture '{synth_kw['architecture']}' is not supported (only 'skip')",
        )
    try:
        sd = flatten_module(net)
        n_mlp, n_res = layouts.nvlabs_sizes(sd)
        use_noise = "synthesis.b4.conv1.noise_const" in sd
        table = layouts.nvlabs_table(n_mlp, n_res, use_noise=use_noise)
        state, entries = layouts.convert(sd, table, layouts.nvlabs_derived(n_res))
    except (layouts.LayoutError, pickle.UnpicklingError) as e:
        raise CheckpointError(path, f"G_ema: {e}") from None
    if not use_noise:
        for i in range(2 * n_res - 1):
            res = 4 * 2 ** ((i + 1) // 2)
            state[f"synthesis.convs.{i}.noise_strength"] = torch.zeros([])
            state[f"synthesis.convs.{i}.noise_const"] = torch.zeros(res, res)
    clamp = synth_kw.get("conv_clamp")
    config = layouts.infer_config(
        state,
        lr_mlp=float(map_kw.get("lr_multiplier", 0.01)),
        conv_clamp=float(clamp) if clamp is not None else None,
    )
    return GeneratorState(config, state, "nvlabs", entries, "G_ema.")


_TABLES = {
    "rosinality": layouts.rosinality_table,
    "psp/e4e": layouts.rosinality_table,
    "ganinverter": layouts.rosinality_table,
    "nvlabs": layouts.nvlabs_table,
}


def check_config(gs: GeneratorState, expected: AnyConfig | Mapping, path: str | Path) -> None:
    """Raise CheckpointError if the file's tensors do not fit the architecture in ``expected``.

    The error names the first mismatching key in the file's own naming and both shapes (for
    StyleGAN3: the first differing architecture field).
    """
    if _family(expected) == "stylegan3" or isinstance(gs.config, StyleGAN3Config):
        _check_family_config(gs.config, expected, path)
        return
    exp = config_from_dict(expected)
    with torch.device("meta"):
        ref = Generator(exp).state_dict()
    got = gs.config

    def summary(c: GeneratorConfig) -> str:
        width = (
            f"channel_multiplier={c.channel_multiplier:g}"
            if c.channel_max == 512
            else f"channel_base={c.channel_base}, channel_max={c.channel_max}"
        )
        return f"resolution={c.resolution}, {width}, n_mlp={c.n_mlp}, w_dim={c.w_dim}"

    # Entries of the file's format at the expected sizes name keys the file lacks.
    table = _TABLES.get(gs.source_format)
    exp_entries = (
        {e.ours: e for e in table(exp.n_mlp, len(exp.resolutions))} if table is not None else {}
    )
    entries = {**exp_entries, **gs.entries}

    def name(key: str) -> str:
        e = entries.get(key)
        return f"'{gs.prefix}{e.theirs}'" if e else f"'{key}'"

    def shape(key: str, lsap_shape: Iterable[int]) -> list[int]:
        e = entries.get(key)
        return layouts.to_source_shape(lsap_shape, e.kind) if e else list(lsap_shape)

    for key, t in ref.items():
        if key not in gs.state:
            raise CheckpointError(
                path,
                f"key {name(key)} missing in the file ({summary(got)}); config expects it "
                f"with shape {shape(key, t.shape)} ({summary(exp)})",
            )
        if tuple(gs.state[key].shape) != tuple(t.shape):
            raise CheckpointError(
                path,
                f"key {name(key)} has shape {shape(key, gs.state[key].shape)} in the file "
                f"({summary(got)}) but config ({summary(exp)}) expects {shape(key, t.shape)}",
            )
    for key in gs.state:
        if key not in ref:
            raise CheckpointError(
                path,
                f"key {name(key)} in the file ({summary(got)}) has no place in the "
                f"configured generator ({summary(exp)})",
            )


def _family(config: AnyConfig | Mapping) -> str:
    if isinstance(config, Mapping):
        return str(config.get("family") or "stylegan2")
    return "stylegan3" if isinstance(config, StyleGAN3Config) else "stylegan2"


def _check_family_config(got: AnyConfig, expected: AnyConfig | Mapping, path: str | Path) -> None:
    # Only the fields the config names are checked (release entries name what NVlabs publishes).
    names = {"stylegan2": "StyleGAN2", "stylegan3": "StyleGAN3"}
    if _family(got) != _family(expected):
        raise CheckpointError(
            path,
            f"holds a {names[_family(got)]} generator, the config expects "
            f"{names.get(_family(expected), _family(expected))}",
        )
    named = dict(expected) if isinstance(expected, Mapping) else expected.to_dict()
    named.pop("family", None)
    preset = named.pop("config", None)
    if preset is not None and isinstance(got, StyleGAN3Config) and got.name != str(preset).upper():
        raise CheckpointError(
            path, f"is a StyleGAN3-{got.name} generator, the config expects StyleGAN3-{preset}"
        )
    g = got.to_dict()
    for key, value in named.items():
        if key not in g:
            raise CheckpointError(
                path, f"the config names '{key}', not a {names[_family(got)]} field"
            )
        if g[key] != value:
            raise CheckpointError(
                path, f"{key} is {g[key]!r} in the file, the config says {value!r}"
            )


def _load_delta(
    obj: Mapping[str, Any], path: Path, base: Generator | str | Path | None, device
) -> Generator:
    """The tuned generator of a loaded delta file: its base (``base``, else the file the delta
    recorded) loaded first, then handed to ``generator_from_delta``."""
    check_delta(obj, path)
    if base is None:
        base = delta_base_file(obj, path)
    if isinstance(base, str | Path):
        return generator_from_delta(
            obj, path, load_generator(base, device), device, base_desc=f"file {base}"
        )
    return generator_from_delta(obj, path, base, device)


def load_generator(
    path: str | Path,
    device: torch.device | str = "cpu",
    *,
    expected: AnyConfig | Mapping | None = None,
    base: Generator | str | Path | None = None,
) -> AnyGenerator:
    """Load a StyleGAN2 or StyleGAN3 generator from a file users own.

    Reads rosinality ``.pt`` (``{'g_ema', 'latent_avg'}``, also training checkpoints), the
    ``decoder`` of pSp/e4e/GANInverter(LSAP) checkpoints, NVlabs ``.pkl`` (``G_ema`` of
    stylegan2-ada-pytorch or stylegan3, read without executing code) and lsap's own files. The architecture is read off the tensors.
    A generator delta (``lsap.io.generator_delta``, e.g. a pivotal-tuning result) is added to its
    base generator: ``base``, or the base file recorded in the delta when ``base`` is None.

    Args:
        path: checkpoint file, or ``asset:<name>`` (a file shipped in ``lsap/assets``).
        device: where to put the generator.
        expected: architecture from config; a mismatch raises naming the key and both shapes.
        base: for a delta file only: the base generator or its file (``asset:`` allowed; its
            sha256 must match).

    Returns:
        Generator in eval mode with ``requires_grad=False`` and ``.sha256`` = sha256 of the file.
        Without a stored ``latent_avg``, ``w_avg`` is estimated from 10,000 mapped samples (seed 0).
    """
    from lsap.assets import resolve

    path = resolve(path)
    if isinstance(base, (str, Path)):
        base = resolve(base)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if _is_nvlabs_pickle(path):
        gs = _read_nvlabs(path)
    else:
        obj = read_torch_file(path)
        if is_generator_delta(obj):
            G = _load_delta(obj, path, base, device)
            if expected is not None:
                check_config(GeneratorState(G.config, G.state_dict(), "lsap"), expected, path)
            return G
        gs = _state_from_loaded(path, obj)
    if base is not None:
        raise CheckpointError(path, "base= is for generator deltas, and this file is a generator")
    if expected is not None:
        check_config(gs, expected, path)
    G = build_generator(gs.config)
    missing, unexpected = G.load_state_dict(gs.state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            path, f"state does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    G = G.to(device).eval().requires_grad_(False)
    if not gs.has_w_avg:
        warnings.warn(
            f"{path}: no latent_avg stored; estimating w_avg from {W_AVG_SAMPLES} samples (seed 0)",
            stacklevel=2,
        )
        with torch.no_grad():
            G.mapping.w_avg.copy_(torch.cat(list(iter_w(G, W_AVG_SAMPLES, seed=0))).mean(0))
    G.sha256 = file_sha256(path)
    G.source_format = gs.source_format
    return G


def save_generator(
    G: Generator,
    path: str | Path,
    provenance: Mapping[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``G`` in lsap's format (weights-only loadable), atomically.

    The file holds ``format``, ``format_version``, ``config`` (dict), ``state_dict`` (CPU tensors
    of ``dtype``, noise buffers included) and ``provenance`` (lsap version plus what the caller
    gives). ``dtype=torch.float16`` halves the file (shipped assets); loading returns float32.
    """
    from lsap.core.version import __version__

    if not dtype.is_floating_point:
        raise ValueError(f"save_generator: dtype must be a floating type, got {dtype}")
    state = {k: v.detach().to("cpu", dtype) for k, v in G.state_dict().items()}
    obj = {
        "format": LSAP_GENERATOR_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": G.config.to_dict(),
        "state_dict": state,
        "provenance": {"lsap_version": __version__, **dict(provenance or {})},
    }
    return atomic_torch_save(path, obj)


def save_rosinality(G: Generator, path: str | Path) -> Path:
    """Write ``G`` as a rosinality checkpoint ``{'g_ema': state_dict, 'latent_avg': [w_dim]}``.

    The file loads in rosinality's stylegan2-pytorch (and pSp/e4e/GANInverter) when they are built
    with ``G``'s sizes. ``conv_clamp`` has no rosinality equivalent and is refused.
    """
    if not isinstance(G, Generator):
        raise ValueError("rosinality's format holds StyleGAN2 generators only")
    if G.config.conv_clamp is not None:
        raise ValueError("rosinality's generator has no conv_clamp; cannot export this generator")
    n_res = len(G.synthesis.torgbs)
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    g_ema = layouts.unconvert(state, layouts.rosinality_table(G.config.n_mlp, n_res))
    g_ema.update(layouts.rosinality_derived(n_res))
    return atomic_torch_save(path, {"g_ema": g_ema, "latent_avg": state["mapping.w_avg"].clone()})


def init_generator(config: AnyConfig | Mapping, seed: int = 0) -> AnyGenerator:
    """A randomly initialised generator, deterministic in ``seed``, with w_avg estimated.

    Used for tiny test/default generators; ``.sha256`` is a digest of its tensors. A StyleGAN3
    config (``family: stylegan3``) gets :func:`lsap.nets.stylegan3.randomize_`.
    """
    cfg = config_from_dict(config)
    if isinstance(cfg, StyleGAN3Config):
        G3 = build_generator(cfg)
        randomize_(G3, seed)
        with torch.no_grad():
            G3.mapping.w_avg.copy_(torch.cat(list(iter_w(G3, W_AVG_SAMPLES, seed=seed))).mean(0))
        G3.eval().requires_grad_(False)
        G3.sha256 = tensors_sha256(G3.state_dict())
        return G3
    g = torch.Generator().manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("affine.bias"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("noise_strength") or name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / getattr(_owner(G, name), "lr_mul", 1.0))
        for name, b in G.named_buffers():
            if name.endswith("noise_const"):
                b.copy_(torch.randn(b.shape, generator=g))
        G.mapping.w_avg.copy_(torch.cat(list(iter_w(G, W_AVG_SAMPLES, seed=seed))).mean(0))
    G.eval().requires_grad_(False)
    G.sha256 = tensors_sha256(G.state_dict())
    return G


def _owner(G: Generator, param_name: str) -> torch.nn.Module:
    return G.get_submodule(param_name.rsplit(".", 1)[0]) if "." in param_name else G


def generator_from_config(
    cfg: Mapping[str, Any], device: torch.device | str = "cpu"
) -> AnyGenerator:
    """Build the generator a Hydra ``generator`` config group describes.

    ``cfg.path`` set: load that file (``asset:<name>`` = a file shipped in ``lsap/assets``),
    checking it against ``cfg.arch`` when given; a generator delta is added to ``cfg.base``
    (a file, ``asset:`` allowed; null = the base file recorded in the delta).
    ``cfg.path`` null: a random generator of architecture ``cfg.arch`` with ``cfg.seed``.
    ``cfg.crop`` (null or ``[top, left, height, width]``): the valid region of a non-square
    domain, checked (before any file is read when ``arch.resolution`` is given) and set as the
    generator's ``crop`` (``lsap.nets.crop.ValidRegion``).

    Raises:
        ValueError: a bad ``generator.crop`` (one line naming the key).
    """
    arch = dict(cfg.get("arch") or {})
    crop = cfg.get("crop")
    ValidRegion.from_config(crop, arch.get("resolution"))  # fail before loading anything
    if cfg.get("path"):
        base = cfg.get("base") or None
        G = load_generator(cfg["path"], device, expected=arch or None, base=base)
    elif not arch:
        raise ValueError("generator config needs either 'path' or 'arch'")
    else:
        G = init_generator(arch, int(cfg.get("seed", 0))).to(device)
    G.crop = ValidRegion.from_config(crop, G.resolution)
    return G


def load_tuned_generators(
    paths: Iterable[str | Path | None], base: Generator
) -> dict[str | None, Generator]:
    """The generators a batch of code records names (``CodeRecord.generator``), each loaded once.

    Args:
        paths: generator delta files, None for records rendered with ``base``.
        base: the run's generator: the deltas' base (its sha256 must match theirs), or itself a
            tuned generator loaded from one of those delta files (``generator.path=<delta>
            generator.base=G.pt``), which records naming that file then use as it is.

    Returns:
        ``{path or None: generator}`` on base's device; None and ``base``'s own delta file map to
        ``base`` itself. At 1024 px each tuned generator holds about 120 MB: callers load one
        batch's worth at a time.

    Raises:
        CheckpointError: ``base`` is a tuned generator and a record names another delta (a delta
            is added to its base generator, never on top of another tuned one).
    """
    out: dict[str | None, Generator] = {}
    for p in paths:
        key = None if p is None else str(p)
        if key in out:
            continue
        if key is None:
            out[key] = base
        elif getattr(base, "base_sha256", None):  # base is a tuned generator
            if file_sha256(key) == base.sha256:  # ... loaded from this very delta file
                out[key] = base
                continue
            raise CheckpointError(
                key,
                f"the codes name this tuned generator, but the configured generator is another "
                f"tuned generator ({str(base.sha256)[:12]}); give its base generator instead "
                "(generator.path=<base>)",
            )
        else:
            out[key] = load_generator(key, base.w_avg.device, base=base)
    return out
