"""lsap-directions' config (``conf/directions.yaml`` and the ``labels`` group), typed once.

:meth:`DirectionsSettings.from_config` is the one reading of the command's config: ``lsap-directions``
converts it at the top of its ``run`` and passes the settings down. The groups whose one reader
lives elsewhere (``generator``, ``code_source``) are kept as plain values; the defaults live in
``conf/`` alone, so a missing key is a one-line error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsap.core.plain import settings_dict
from lsap.editing.fitting import FitSettings

LABEL_SOURCES = ("samples", "images")
_SEE = "conf/directions.yaml"


def attribute_list(value: Any) -> list[str] | None:
    """``labels.attributes`` as a list (one name given as ``labels.attributes=smile`` too); None
    (every attribute) for null or an empty list."""
    if value is None:
        return None
    return [str(value)] if isinstance(value, str) else [str(a) for a in value] or None


@dataclass(frozen=True)
class SampleLabels:
    """``labels=samples``: the generator's samples read by an attribute classifier (meanings in
    ``conf/labels/samples.yaml``).

    Attributes:
        classifier: the classifier file (``asset:<name>`` allowed).
        attributes: classifier outputs to fit; None = all of them.
        num_samples: W codes of z seed ``seed``.
        seed: z seed of the samples.
        truncation_psi: W truncation towards w_avg (1 = none).
        threshold: binary attributes: label = probability > threshold.
        batch_size: images rendered and classified at once.
        chunk_size: samples labelled per cache file.
        cache_dir: where the chunks are kept (None = no cache).
    """

    classifier: str
    attributes: list[str] | None
    num_samples: int
    seed: int
    truncation_psi: float
    threshold: float
    batch_size: int
    chunk_size: int
    cache_dir: str | None

    source = "samples"


@dataclass(frozen=True)
class ImageLabels:
    """``labels=images``: a folder of images with a labels file, and their codes (meanings in
    ``conf/labels/images.yaml``).

    Attributes:
        images: the image folder.
        csv: the labels file; None = ``<images>/labels.csv``.
        codes: an lsap-invert run folder (or a folder of code files); None = encode the images
            with the ``code_source`` group.
        attributes: columns to fit; None = every column after the name.
        kinds: ``{attribute: "binary" | "scalar"}`` where given.
        batch_size: images encoded at once.
    """

    images: str
    csv: str | None
    codes: str | None
    attributes: list[str] | None
    kinds: dict[str, str]
    batch_size: int

    source = "images"


def labels_from_config(cfg: Mapping[str, Any]) -> SampleLabels | ImageLabels:
    """The settings of a ``labels`` config (an OmegaConf node or plain dict).

    Raises:
        ValueError: an unknown ``source``, or a missing key (named).
    """
    what, see = "the labels config", "conf/labels/<source>.yaml"
    c = settings_dict(cfg, ("source",), what=what, see=see, exact=False)
    source = str(c["source"])
    if source == "samples":
        keys = (
            "classifier",
            "attributes",
            "num_samples",
            "seed",
            "truncation_psi",
            "threshold",
            "batch_size",
            "chunk_size",
            "cache_dir",
        )
        c = settings_dict(c, ("source", *keys), what=what, see="conf/labels/samples.yaml")
        return SampleLabels(
            classifier=str(c["classifier"]),
            attributes=attribute_list(c["attributes"]),
            num_samples=int(c["num_samples"]),
            seed=int(c["seed"]),
            truncation_psi=float(c["truncation_psi"]),
            threshold=float(c["threshold"]),
            batch_size=int(c["batch_size"]),
            chunk_size=int(c["chunk_size"]),
            cache_dir=None if c["cache_dir"] is None else str(c["cache_dir"]),
        )
    if source == "images":
        keys = ("images", "csv", "codes", "attributes", "kinds", "batch_size")
        c = settings_dict(c, ("source", *keys), what=what, see="conf/labels/images.yaml")
        return ImageLabels(
            images=str(c["images"]),
            csv=str(c["csv"]) if c["csv"] else None,
            codes=str(c["codes"]) if c["codes"] else None,
            attributes=attribute_list(c["attributes"]),
            kinds={str(k): str(v) for k, v in (c["kinds"] or {}).items()},
            batch_size=int(c["batch_size"]),
        )
    raise ValueError(f"labels.source must be one of {LABEL_SOURCES}, got {source!r}")


@dataclass(frozen=True)
class DirectionsSettings:
    """Everything lsap-directions reads (meanings in ``conf/directions.yaml``).

    Attributes:
        config: the whole resolved config (plain), as provenance records it.
        generator: the ``generator`` group, plain (``lsap.io.generator_from_config``).
        code_source: the ``code_source`` group, plain, or None (not chosen).
        labels: where the labelled codes come from.
        fit: how the directions are fitted and scored (``fit`` and ``split``).
        device: "auto", "cpu", "cuda", ...
        output_dir: the run folder.
    """

    config: dict[str, Any]
    generator: dict[str, Any]
    code_source: dict[str, Any] | None
    labels: SampleLabels | ImageLabels
    fit: FitSettings
    device: str
    output_dir: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DirectionsSettings:
        """The settings of a composed ``directions`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: a key is missing (named) or a setting is out of range.
            omegaconf.MissingMandatoryValue: a ``???`` setting left unset (named).
        """
        from lsap.core.plain import plain

        c = settings_dict(
            plain(cfg, throw_on_missing=True),
            ("generator", "labels", "fit", "split", "device", "paths"),
            what="the directions config",
            see=_SEE,
            exact=False,
        )
        fit_keys = ("method", "layers", "l2", "balanced", "max_iter")
        fit = settings_dict(c["fit"], fit_keys, what="fit", see=_SEE)
        split = settings_dict(c["split"], ("heldout", "seed"), what="split", see=_SEE)
        paths = settings_dict(c["paths"], ("output_dir",), what="paths", see=_SEE, exact=False)
        code_source = c.get("code_source")  # an optional group (code_source: null by default)
        return cls(
            config=c,
            generator=dict(c["generator"]),
            code_source=dict(code_source) if code_source else None,
            labels=labels_from_config(c["labels"]),
            fit=FitSettings.from_config(fit, split),
            device=str(c["device"]),
            output_dir=str(paths["output_dir"]),
        )
