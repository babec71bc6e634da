"""Load and save image encoders: lsap's own files, pSp/e4e releases, GANInverter (LSAP) checkpoints.

Files users own, all read weights-only (``argparse.Namespace`` allowed, for old ``opts``):

- pSp ``psp_ffhq_encode.pt`` / e4e ``e4e_ffhq_encode.pt``: ``{'state_dict': {'encoder.*',
  'decoder.*'}, 'latent_avg', 'opts'}``; ``opts['encoder_type']`` names the architecture.
- GANInverter / LSAP ``lsap_ffhq_r50_wp_official.pt``: ``{'encoder': {'encoder.*', 'latent_avg'},
  'decoder': ..., 'opts', ...}``.
- lsap's encoder file (:func:`save_encoder`): ``{'format': 'lsap.encoder', 'format_version': 1,
  'config': {arch, num_ws, w_dim, input_size, stages, input_nc}, 'state_dict': encoder weights
  with ``latent_avg``, 'generator_sha256', 'crop', 'provenance'}`` (``crop``: the valid region
  ``[top, left, height, width]`` of the non-square generator it was trained for, or None).
- lsap-train's Lightning checkpoints (``*.ckpt``): the same header under ``'lsap_encoder'``
  (plus the training ``progressive_stage``) and the weights under ``state_dict['encoder.*']``.

The module names of :mod:`lsap.nets.encoder` are the released ones, so mapping a file onto an
encoder is stripping its prefixes; the architecture sizes are read off the tensors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.errors import CheckpointError
from lsap.core.hashing import file_sha256
from lsap.io.checkpoints import read_torch_file
from lsap.nets.encoder import ENCODERS, PyramidEncoder, build_encoder, latent_avg_rows

LSAP_ENCODER_FORMAT = "lsap.encoder"
FORMAT_VERSION = 1
LIGHTNING_KEY = "lsap_encoder"  # where lsap-train's checkpoints keep the encoder header

# opts['encoder_type'] of pSp/e4e/GANInverter -> our architecture name
ENCODER_TYPES = {"Encoder4Editing": "e4e", "GradualStyleEncoder": "psp"}
_SIZE_KEYS = ("output_size", "stylegan_size", "resolution")  # pSp, e4e, GANInverter


@dataclass
class EncoderState:
    """An encoder read from a file, before building the module."""

    config: dict[str, Any]  # build_encoder(**config)
    state: dict[str, Tensor]  # encoder weights, latent_avg included ([num_ws, w_dim])
    source_format: str  # "lsap", "lsap-train", "psp/e4e", "ganinverter"
    generator_sha256: str | None = None
    progressive_stage: int | None = None  # stored training stage (lsap-train checkpoints)
    crop: list[int] | None = None  # the training generator's valid region (lsap files only)


def _opts(obj: Mapping) -> dict:
    opts = obj.get("opts")
    if opts is None:
        return {}
    return dict(opts) if isinstance(opts, Mapping) else dict(vars(opts))


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Tensor]:
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k.startswith(prefix):
            out[k[len(prefix) :].removeprefix("module.")] = v
    return out


def _infer_config(state: Mapping[str, Tensor], arch: str) -> dict[str, Any]:
    """Architecture sizes from the tensors: heads, code width, backbone stages, input size."""
    heads = {int(m.group(1)) for k in state if (m := re.match(r"styles\.(\d+)\.", k))}
    if not heads or "styles.0.linear.weight" not in state or "input_layer.0.weight" not in state:
        raise ValueError("no IR-SE pyramid encoder found (missing 'styles.0.linear.weight')")
    num_ws = max(heads) + 1
    w_dim = int(state["styles.0.linear.weight"].shape[0])
    units = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.res_layer\.1\.weight", k))}
    )
    stages: list[list[int]] = []
    for u in units:
        depth, in_c = (int(s) for s in state[f"body.{u}.res_layer.1.weight"].shape[:2])
        if stages and stages[-1][1] == depth and in_c == depth:
            stages[-1][2] += 1
        else:
            stages.append([in_c, depth, 1])
    if len(stages) != 4:
        raise ValueError(f"expected a backbone of 4 stages, found {len(stages)} ({stages})")
    num_convs = sum(1 for k in state if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k))
    return {
        "arch": arch,
        "num_ws": num_ws,
        "w_dim": w_dim,
        "input_size": 16 * 2**num_convs,
        "stages": stages,
        "input_nc": int(state["input_layer.0.weight"].shape[1]),
    }


def _arch_from_opts(opts: dict, default: str | None, path: Path) -> str:
    etype = opts.get("encoder_type", default)
    if etype is None:
        raise CheckpointError(
            path,
            "cannot tell e4e from pSp (no opts['encoder_type']); pass arch='e4e' or arch='psp'",
        )
    if etype not in ENCODER_TYPES:
        raise CheckpointError(
            path, f"encoder_type '{etype}' is not supported (only {sorted(ENCODER_TYPES)})"
        )
    return ENCODER_TYPES[etype]


def _latent_avg(latent_avg: Any, opts: dict, cfg: dict, path: Path) -> Tensor:
    num_ws, w_dim = cfg["num_ws"], cfg["w_dim"]
    if latent_avg is None:
        if opts.get("start_from_latent_avg") is False:  # codes are used as they are
            return torch.zeros(num_ws, w_dim)
        raise CheckpointError(path, "no 'latent_avg' stored beside the encoder")
    try:
        return latent_avg_rows(latent_avg, num_ws, w_dim)
    except ValueError as e:
        raise CheckpointError(path, str(e)) from None


def _check_num_ws(opts: dict, cfg: dict, path: Path) -> None:
    for key in _SIZE_KEYS:
        if opts.get(key):
            res = int(opts[key])
            expected = 2 * int(math.log2(res)) - 2
            if expected != cfg["num_ws"]:
                raise CheckpointError(
                    path,
                    f"opts['{key}']={res} means {expected} w+ layers but the encoder has "
                    f"{cfg['num_ws']} style heads",
                )
            return


def read_encoder_state(path: str | Path, *, arch: str | None = None) -> EncoderState:
    """Read the encoder in ``path`` (no module built). ``arch`` overrides the file's encoder type.

    Raises:
        CheckpointError: missing/unsafe/unreadable file, no encoder in it, sizes that disagree.
    """
    from lsap.assets import resolve

    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    obj = read_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a dict, found {type(obj).__name__}")
    if arch is not None and arch not in ENCODERS:
        raise ValueError(f"arch must be one of {sorted(ENCODERS)}, got {arch!r}")
    try:
        if obj.get("format") == LSAP_ENCODER_FORMAT:
            return EncoderState(
                dict(obj["config"]),
                dict(obj["state_dict"]),
                "lsap",
                obj.get("generator_sha256"),
                obj.get("progressive_stage"),
                obj.get("crop"),
            )
        if isinstance(obj.get(LIGHTNING_KEY), Mapping):
            head = obj[LIGHTNING_KEY]
            return EncoderState(
                dict(head["config"]),
                _strip(obj["state_dict"], "encoder."),
                "lsap-train",
                head.get("generator_sha256"),
                head.get("progressive_stage"),
                head.get("crop"),
            )
        opts = _opts(obj)
        if isinstance(obj.get("encoder"), Mapping):  # GANInverter / LSAP reference toolbox
            enc = obj["encoder"]
            state, latent_avg, fmt = _strip(enc, "encoder."), enc.get("latent_avg"), "ganinverter"
            default = "Encoder4Editing"  # GANInverter's default encoder_type
        elif isinstance(obj.get("state_dict"), Mapping):  # pSp / e4e release
            state, latent_avg, fmt = (
                _strip(obj["state_dict"], "encoder."),
                obj.get("latent_avg"),
                "psp/e4e",
            )
            default = None
        else:
            keys = ", ".join(sorted(map(str, obj))[:8])
            raise CheckpointError(
                path,
                f"no encoder found (top-level keys: {keys}); expected an lsap encoder, a pSp/e4e "
                "release ({'state_dict': {'encoder.*'}, 'latent_avg', 'opts'}) or a GANInverter "
                "checkpoint ({'encoder': {'encoder.*', 'latent_avg'}})",
            )
        if not state:
            raise CheckpointError(path, "no 'encoder.*' weights in the file")
        resolved = arch or _arch_from_opts(opts, default, path)
        cfg = _infer_config(state, resolved)
        _check_num_ws(opts, cfg, path)
        state["latent_avg"] = _latent_avg(latent_avg, opts, cfg, path)
        return EncoderState(cfg, state, fmt)
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            path, f"malformed encoder checkpoint ({type(e).__name__}: {e})"
        ) from None


def _load_weights(enc: PyramidEncoder, state: Mapping[str, Tensor], path: Path) -> None:
    """Strict load except BatchNorm ``num_batches_tracked`` (absent from old files)."""
    own = enc.state_dict()
    for key, t in state.items():
        if key in own and tuple(own[key].shape) != tuple(t.shape):
            raise CheckpointError(
                path,
                f"key '{key}' has shape {list(t.shape)}, the encoder expects {list(own[key].shape)}",
            )
    missing, unexpected = enc.load_state_dict(dict(state), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"weights do not fit the encoder: missing {missing[:4]}, unexpected {unexpected[:4]}",
        )


def load_encoder(
    path: str | Path, device: torch.device | str = "cpu", *, arch: str | None = None
) -> PyramidEncoder:
    """Load an image encoder users own (see the module docstring for the formats).

    Args:
        path: checkpoint file, or ``asset:<name>`` (a file shipped in ``lsap/assets``).
        device: where to put the encoder.
        arch: "e4e" or "psp" to override (or supply) the file's encoder type.

    Returns:
        the encoder in eval mode at the progressive stage it was saved at (lsap-train checkpoints
        and lsap's ``encoder.pt`` record it: a mid-schedule checkpoint's untrained heads stay
        off), else with every stage active: ``encoder(images [N, 3, 256, 256] in [-1, 1]) ->
        w_plus [N, num_ws, w_dim]`` with ``latent_avg`` added.
        ``.sha256`` is the file's sha256, ``.source_format`` its format, ``.generator_sha256``
        the generator it was trained with when the file records it, ``.crop`` that generator's
        valid region ``[top, left, height, width]`` (None: square, or not recorded).
    """
    from lsap.assets import resolve

    path = resolve(path)
    es = read_encoder_state(path, arch=arch)
    cfg = dict(es.config)
    if arch is not None:
        cfg["arch"] = arch
    try:
        enc = build_encoder(**cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(path, f"bad encoder config {cfg} ({e})") from None
    _load_weights(enc, es.state, path)
    stage = enc.num_ws - 1 if es.progressive_stage is None else int(es.progressive_stage)
    try:
        enc.set_progressive_stage(stage)
    except ValueError as e:
        raise CheckpointError(path, f"bad progressive_stage ({e})") from None
    enc = enc.to(device).eval()
    enc.sha256 = file_sha256(path)
    enc.source_format = es.source_format
    enc.generator_sha256 = es.generator_sha256
    enc.crop = list(es.crop) if es.crop is not None else None
    return enc


def save_encoder(
    encoder: PyramidEncoder,
    path: str | Path,
    *,
    generator_sha256: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    crop: list[int] | None = None,
) -> Path:
    """Write ``encoder`` in lsap's format (weights-only loadable), atomically, with its current
    progressive stage (:func:`load_encoder` restores it).

    ``dtype=torch.float16`` stores the floating-point weights in half precision (shipped assets:
    half the file); ``latent_avg`` stays float32 (the codes' offset, where rounding would shift
    every code) and loading returns a float32 encoder either way. ``crop``: the training
    generator's valid region (``G.crop.box``), recorded so a mismatch can be reported.
    """
    from lsap.core.version import __version__

    if not dtype.is_floating_point:
        raise ValueError(f"save_encoder: dtype must be a floating type, got {dtype}")
    state = {}
    for k, v in encoder.state_dict().items():
        v = v.detach().to("cpu")
        if v.is_floating_point() and k != "latent_avg":
            v = v.to(dtype)
        state[k] = v
    obj = {
        "format": LSAP_ENCODER_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": encoder.config(),
        "state_dict": state,
        "generator_sha256": generator_sha256,
        "progressive_stage": int(encoder.progressive_stage),  # what load_encoder activates
        "crop": list(crop) if crop is not None else None,
        "provenance": {"lsap_version": __version__, **dict(provenance or {})},
    }
    return atomic_torch_save(path, obj)


def init_backbone(encoder: PyramidEncoder, path: str | Path) -> int:
    """Initialise ``input_layer`` and ``body`` from IR-SE50 face-recognition weights.

    ``model_ir_se50.pth`` (the ArcFace network of pSp/e4e/LSAP) uses the same module names; its
    ``output_layer`` is ignored. Returns the number of tensors copied.

    Raises:
        CheckpointError: a backbone tensor is missing or has another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file (IR-SE50 backbone weights)")
    obj = read_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a state dict, found {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = {
        k: v
        for k, v in encoder.state_dict().items()
        if k.startswith(("input_layer.", "body.")) and not k.endswith("num_batches_tracked")
    }
    with torch.no_grad():
        for key, t in own.items():
            if key not in state:
                raise CheckpointError(path, f"missing backbone key '{key}' (not IR-SE50 weights?)")
            if tuple(state[key].shape) != tuple(t.shape):
                raise CheckpointError(
                    path,
                    f"key '{key}' has shape {list(state[key].shape)}, the encoder's backbone "
                    f"expects {list(t.shape)}",
                )
        loaded = {k: state[k] for k in own}
    encoder.load_state_dict(loaded, strict=False)
    return len(loaded)
