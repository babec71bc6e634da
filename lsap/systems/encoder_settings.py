"""How an encoder-training job (``lsap-train``) is set up, typed once.

:class:`EncoderTrainingSettings` is built in one place (:meth:`EncoderTrainingSettings.from_config`)
from the ``train`` config: the ``encoder`` group and ``system``'s noise modes typed, the latent
discriminator's part of ``loss`` checked, and the groups whose one reader lives elsewhere
(``generator``: ``lsap.io.generator_from_config``; ``loss``: ``lsap.losses.build_objective``;
``alignment``: ``lsap.alignment.anchors.anchors_from_config``; ``optimizer``: its ``_target_``)
kept as checked plain values. ``EncoderSystem`` builds its parts from it; every default lives in
``conf/``, and a missing key is a one-line error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsap.core.plain import settings_dict
from lsap.training.latent_discriminator import LatentDiscriminatorTrainer

NOISE_MODES = ("random", "const")
GROUPS = ("encoder", "generator", "loss", "alignment", "optimizer", "system")
_FIELDS_NET = ("net", "backbone_weights", "progressive_start", "progressive_step_every")
_LOSS = "conf/loss/lsap_e.yaml"


@dataclass(frozen=True)
class EncoderNetSettings:
    """The ``encoder`` config group (meanings in ``conf/encoder/e4e.yaml``).

    Attributes:
        net: ``_partial_`` config of a ``lsap.nets.encoder.PyramidEncoder`` class (num_ws and
            w_dim come from the generator).
        backbone_weights: IR-SE50 weights to start the backbone from, or None (random).
        progressive_start: steps with only the shared code, or None (every delta from the start).
        progressive_step_every: then one more w+ index every so many steps.
    """

    net: dict[str, Any]
    backbone_weights: str | None
    progressive_start: int | None
    progressive_step_every: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EncoderNetSettings:
        """Raises ValueError: a key is missing or unknown."""
        c = settings_dict(cfg, _FIELDS_NET, what="the encoder config", see="conf/encoder/e4e.yaml")
        start = c["progressive_start"]
        return cls(
            net=dict(c["net"]),
            backbone_weights=c["backbone_weights"] or None,
            progressive_start=None if start is None else int(start),
            progressive_step_every=int(c["progressive_step_every"]),
        )


@dataclass(frozen=True)
class EncoderTrainingSettings:
    """Everything ``EncoderSystem`` builds from (the ``train`` config's groups).

    Attributes:
        encoder: the ``encoder`` group, typed.
        generator: the ``generator`` group (plain; ``lsap.io.generator_from_config`` reads it).
        loss: the ``loss`` group (plain; ``lsap.losses.build_objective`` reads it).
        alignment: the ``alignment`` group (plain; ``anchors_from_config`` reads it).
        optimizer: a ``_partial_`` optimiser config, called with the encoder's parameters.
        noise_mode: generator noise in training (``system.noise_mode``: random | const).
        val_noise_mode: generator noise in validation (``system.val_noise_mode``).
        autocast: GPU option (``system.autocast``): None (float32) or "bf16", the training and
            validation steps under bf16 autocast with float32 weights, codes and loss.
        tf32: GPU option (``system.tf32``): TF32 matmuls/convolutions in the steps.
        w_discriminator: weight of e4e's latent-discriminator term (``loss.w_discriminator``;
            0 = off).
        w_discriminator_options: ``loss.options.w_discriminator`` (D and its training), checked
            when the weight is > 0, else None.
        lpips_options: ``loss.options.lpips`` (the network of ``val/metric/lpips``, whatever the
            loss's LPIPS weight).
    """

    encoder: EncoderNetSettings
    generator: dict[str, Any]
    loss: dict[str, Any]
    alignment: dict[str, Any]
    optimizer: dict[str, Any]
    noise_mode: str
    val_noise_mode: str
    autocast: str | None
    tf32: bool
    w_discriminator: float
    w_discriminator_options: dict[str, Any] | None
    lpips_options: dict[str, Any]

    def __post_init__(self) -> None:
        for key in ("noise_mode", "val_noise_mode"):
            if getattr(self, key) not in NOISE_MODES:
                raise ValueError(
                    f"system.{key} must be one of {NOISE_MODES}, got {getattr(self, key)!r}"
                )
        if self.w_discriminator < 0:
            raise ValueError(f"loss.w_discriminator must be >= 0, got {self.w_discriminator}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EncoderTrainingSettings:
        """The settings of a ``train`` config (an OmegaConf node or plain dict), or of the plain
        dict :meth:`to_dict` made (what a checkpoint records as hyper-parameters).

        Raises:
            ValueError: a group or key is missing (named), or a value is out of range.
        """
        c = settings_dict(cfg, GROUPS, what="the train config", see="conf/train.yaml", exact=False)
        system = settings_dict(
            c["system"],
            ("noise_mode", "val_noise_mode", "autocast", "tf32"),
            what="system",
            see="conf/train.yaml",
        )
        loss = settings_dict(
            c["loss"], ("w_discriminator", "options"), what="loss", see=_LOSS, exact=False
        )
        weight = float(loss["w_discriminator"])
        needed = ("lpips", "w_discriminator") if weight > 0 else ("lpips",)
        options = settings_dict(
            loss["options"], needed, what="loss.options", see=_LOSS, exact=False
        )
        d_options = None
        if weight > 0:
            d_options = settings_dict(
                options["w_discriminator"],
                LatentDiscriminatorTrainer.OPTIONS,
                what="loss.options.w_discriminator",
                see=_LOSS,
            )
        alignment = settings_dict(
            c["alignment"],
            ("num_samples", "seed", "batch_size", "cache_dir"),
            what="the alignment config",
            see="conf/alignment/default.yaml",
        )
        return cls(
            encoder=EncoderNetSettings.from_config(c["encoder"]),
            generator=dict(c["generator"]),
            loss=loss,
            alignment=alignment,
            optimizer=dict(c["optimizer"]),
            noise_mode=str(system["noise_mode"]),
            val_noise_mode=str(system["val_noise_mode"]),
            autocast=None if system["autocast"] is None else str(system["autocast"]),
            tf32=bool(system["tf32"]),
            w_discriminator=weight,
            w_discriminator_options=d_options,
            lpips_options=dict(options["lpips"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The config groups these settings came from, as plain values (``from_config`` of it
        gives equal settings): what ``EncoderSystem`` saves as its hyper-parameters."""
        e = self.encoder
        return {
            "encoder": {
                "net": dict(e.net),
                "backbone_weights": e.backbone_weights,
                "progressive_start": e.progressive_start,
                "progressive_step_every": e.progressive_step_every,
            },
            "generator": dict(self.generator),
            "loss": dict(self.loss),
            "alignment": dict(self.alignment),
            "optimizer": dict(self.optimizer),
            "system": {
                "noise_mode": self.noise_mode,
                "val_noise_mode": self.val_noise_mode,
                "autocast": self.autocast,
                "tf32": self.tf32,
            },
        }
