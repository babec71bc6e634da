"""The objective: a weighted sum of named loss terms, every term reported.

Weights come from the ``loss`` config group (``l2``, ``lpips``, ``id``, ``sncd``, ``noise_reg``,
``delta_norm``, ``w_norm``); a weight of 0 means the term is neither built nor computed. LSAP_O /
LSAP_E are these objectives with ``sncd > 0``; the baselines are the same configs with ``sncd: 0``.

A non-square generator (``generator.crop``) hands the objective its valid region: every image term
(``l2``, ``lpips``, ``id``) then sees only that box of the images and targets, so pixels outside
it never change the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from lsap.core.errors import WeightsUnavailableError
from lsap.core.plain import settings_dict
from lsap.losses.base import LossInputs, LossTerm
from lsap.nets.crop import ValidRegion, crop_valid

TERM_NAMES = ("l2", "lpips", "id", "sncd", "noise_reg", "delta_norm", "w_norm")


class Objective(nn.Module):
    """``total = sum_k weight_k * term_k(inputs)`` per sample.

    Args:
        terms: name -> :class:`LossTerm`; only terms with a non-zero weight are kept.
        weights: name -> weight.
        crop: the generator's valid region (``lsap.nets.crop.ValidRegion``): ``images`` and
            ``targets`` are square frames [N, 3, S, S] and the terms see their valid region
            [N, 3, h, w] only; None = the whole images.
    """

    def __init__(
        self,
        terms: Mapping[str, LossTerm],
        weights: Mapping[str, float],
        *,
        crop: ValidRegion | None = None,
    ) -> None:
        super().__init__()
        self.crop = crop
        active = {k: float(w) for k, w in weights.items() if float(w) != 0.0}
        missing = set(active) - set(terms)
        if missing:
            raise ValueError(f"no loss term built for weighted terms {sorted(missing)}")
        self.weights = active
        self.terms = nn.ModuleDict({k: terms[k] for k in active})

    def forward(self, inputs: LossInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns ``(total [N], {name: term value [N]})`` (unweighted terms, for logging)."""
        if self.crop is not None:
            inputs = replace(
                inputs,
                images=crop_valid(inputs.images, self.crop) if inputs.images is not None else None,
                targets=(
                    crop_valid(inputs.targets, self.crop) if inputs.targets is not None else None
                ),
            )
        values: dict[str, Tensor] = {}
        total = None
        for name, term in self.terms.items():
            for field in term.needs:
                if getattr(inputs, field) is None:
                    raise ValueError(f"loss term '{name}' needs '{field}'")
            v = term(inputs)
            values[name] = v
            total = self.weights[name] * v if total is None else total + self.weights[name] * v
        if total is None:
            raise ValueError("the objective has no term with a non-zero weight")
        return total, values


def build_objective(
    cfg: Mapping[str, Any],
    *,
    generator=None,
    anchors: Sequence[Tensor] | None = None,
    cache_dir: str | None = None,
    config_key: str = "loss",
) -> Objective:
    """Build an :class:`Objective` from a ``loss`` config.

    Args:
        cfg: every weight of :data:`TERM_NAMES` as a top-level key (``l2: 1.0``, ``sncd: 0.5``,
            ...) and ``options``: the settings of each weighted term (:data:`OPTION_KEYS`:
            ``options.lpips.net``, ``options.id.backend``, ...), all required (``conf/loss/``).
        generator: needed by ``sncd`` (its affine maps) and ``w_norm`` (``w_avg``); its valid
            region (``generator.crop``, set by ``lsap.io.generator_from_config``) is what the
            image terms compare.
        anchors: S^N anchors, needed by ``sncd``.
        cache_dir: the anchors' cache folder (``alignment.cache_dir``); the hinge ``sncd`` term
            caches its target (the generator samples' SNCD) there. None = no cache.
        config_key: where ``cfg`` sits in the command's config (``loss``, ``refinement.loss``):
            a failed weights download names ``<config_key>.options.<term>.<setting>``.

    Raises:
        ValueError: one line naming a missing weight or term setting and ``conf/loss/``.
    """
    try:
        return _build_objective(cfg, generator, anchors, cache_dir, config_key)
    except WeightsUnavailableError as e:
        raise e.under(f"{config_key}.options") from e.__cause__


_SEE = "conf/loss/"
# the settings each term's options hold (conf/loss/*.yaml); read only when the term's weight is not 0
OPTION_KEYS = {
    "lpips": ("net", "backbone", "resize"),
    "id": ("backend", "weights", "crop"),
    "sncd": ("anchor_normalized", "mode", "target", "target_samples", "target_seed"),
    "delta_norm": ("p",),
}


def loss_settings(cfg: Mapping[str, Any], what: str = "loss") -> tuple[dict[str, float], dict]:
    """The weights of :data:`TERM_NAMES` and the settings of each weighted term, every key read
    from ``cfg`` (``conf/loss/`` holds them; other keys, such as ``w_discriminator``, are left to
    their readers).

    Returns:
        ``({term: weight}, {term: settings})``; settings only of the terms with a non-zero weight
        that take any (:data:`OPTION_KEYS`).

    Raises:
        ValueError: one line naming the missing key and ``conf/loss/``.
    """
    c = settings_dict(
        cfg, (*TERM_NAMES, "options"), what=f"the {what} config", see=_SEE, exact=False
    )
    weights = {k: float(c[k] or 0.0) for k in TERM_NAMES}
    options = settings_dict(c["options"] or {}, (), what=f"{what}.options", see=_SEE, exact=False)
    settings = {
        k: settings_dict(options.get(k) or {}, keys, what=f"{what}.options.{k}", see=_SEE)
        for k, keys in OPTION_KEYS.items()
        if weights[k]
    }
    return weights, settings


def _build_objective(
    cfg: Mapping[str, Any], generator, anchors, cache_dir: str | None, config_key: str
) -> Objective:
    weights, opts = loss_settings(cfg, config_key)
    terms: dict[str, LossTerm] = {}
    if weights["l2"]:
        from lsap.losses.pixel import L2Loss

        terms["l2"] = L2Loss()
    if weights["lpips"]:
        from lsap.losses.perceptual import LPIPSLoss

        terms["lpips"] = LPIPSLoss(**opts["lpips"])
    if weights["id"]:
        from lsap.losses.identity import FaceEmbedder, IDLoss

        terms["id"] = IDLoss(FaceEmbedder(**opts["id"]))
    if weights["sncd"]:
        if generator is None or anchors is None:
            raise ValueError("the sncd term needs the generator and its S^N anchors")
        terms["sncd"] = _sncd_term(generator, anchors, opts["sncd"], cache_dir)
    if weights["noise_reg"]:
        from lsap.losses.latent import NoiseRegLoss

        terms["noise_reg"] = NoiseRegLoss()
    if weights["delta_norm"]:
        from lsap.losses.latent import DeltaNormLoss

        terms["delta_norm"] = DeltaNormLoss(**opts["delta_norm"])
    if weights["w_norm"]:
        from lsap.losses.latent import WNormLoss

        if generator is None:
            raise ValueError("the w_norm term needs the generator (w_avg)")
        terms["w_norm"] = WNormLoss(generator.w_avg)
    return Objective(terms, weights, crop=getattr(generator, "crop", None))


def _sncd_term(generator, anchors, opts: dict[str, Any], cache_dir: str | None) -> LossTerm:
    """The ``sncd`` term of ``loss.options.sncd``: ``anchor_normalized``, ``mode`` (reference |
    hinge) and, for the hinge, ``target`` (mean | a quantile) of the SNCD of ``target_samples``
    generator samples drawn with ``target_seed``."""
    from lsap.losses.alignment import SNCDLoss

    mode = str(opts["mode"])
    target = None
    if mode == "hinge":
        from lsap.alignment.reference import sample_sncd

        samples = sample_sncd(
            generator,
            anchors,
            int(opts["target_samples"]),
            int(opts["target_seed"]),
            cache_dir=cache_dir,
        )
        target = samples.layer_target(opts["target"])
    return SNCDLoss(
        generator,
        anchors,
        anchor_normalized=bool(opts["anchor_normalized"]),
        mode=mode,
        target=target,
    )
