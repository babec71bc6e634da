"""``lsap-directions``: fit InterFaceGAN directions for any generator from labelled codes.

Two label sources (the ``labels`` group): ``samples`` (the generator's samples read by an attribute
classifier, :mod:`lsap.editing.labelled_samples`) and ``images`` (a folder of images with a
``labels.csv`` and their codes from an ``lsap-invert`` run or an encoder,
:mod:`lsap.editing.labelled_images`). Fitting and scoring: :mod:`lsap.editing.fitting`.

Writes under the run folder ``directions/<attribute>.pt`` (``lsap-edit editing=interfacegan``
reads them) and ``directions.json`` (held-out ROC AUC / Pearson r per attribute, counts,
provenance); ``labels=samples`` keeps its labelled chunks in ``labels.cache_dir`` (a rerun into
the same folder resumes).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._threads import set_num_threads
from lsap.core.errors import LsapFileError
from lsap.core.provenance import provenance
from lsap.data.labels import read_labels_csv
from lsap.editing.directions_settings import (
    DirectionsSettings,
    ImageLabels,
    SampleLabels,
    attribute_list,
)
from lsap.editing.fitting import fit_directions, write_directions
from lsap.editing.labelled_images import codes_of_records, encode_files, image_files
from lsap.editing.labelled_samples import label_samples
from lsap.inversion.sources import build_code_source
from lsap.io import generator_from_config
from lsap.io.classifier import load_toy_classifier
from lsap.io.inversions import CodeSet, generator_shas

log = logging.getLogger(__name__)

__all__ = ["attribute_list", "from_images", "from_samples", "run"]


def from_samples(labels: SampleLabels, G: Any, device: torch.device):
    """Codes [N, w_dim], labels [N, A], attributes, kinds and a description of the source."""
    classifier = load_toy_classifier(labels.classifier, device)
    wanted = labels.attributes or list(classifier.names)
    unknown = [a for a in wanted if a not in classifier.names]
    if unknown:
        raise ValueError(
            f"labels.attributes: {unknown[0]!r} is not an output of {labels.classifier} "
            f"(its outputs: {', '.join(classifier.names)})"
        )
    samples = label_samples(
        G,
        classifier,
        labels.num_samples,
        seed=labels.seed,
        batch_size=labels.batch_size,
        chunk_size=labels.chunk_size,
        truncation_psi=labels.truncation_psi,
        cache_dir=labels.cache_dir,
    )
    idx = [classifier.names.index(a) for a in wanted]
    y = samples.labels(labels.threshold)[:, idx]
    kinds = [samples.kinds[i] for i in idx]
    info = {
        "source": "samples",
        "classifier": labels.classifier,
        "classifier_sha256": classifier.sha256,
        "num_samples": labels.num_samples,
        "seed": labels.seed,
        "threshold": labels.threshold,
    }
    return samples.w, y, wanted, kinds, info


def from_images(
    labels: ImageLabels, code_source: Mapping[str, Any] | None, G: Any, device: torch.device
):
    """Codes [N, num_ws, w_dim], labels [N, A], attributes, kinds and a description of the source.

    Args:
        code_source: the ``code_source`` group (plain), or None when not chosen.
    """
    csv = Path(labels.csv) if labels.csv else Path(labels.images) / "labels.csv"
    table = read_labels_csv(csv, labels.attributes, labels.kinds)
    files = image_files(table, labels.images)  # every row names an image of the folder
    info: dict[str, Any] = {"source": "images", "labels_csv": str(csv), "images": labels.images}
    if labels.codes:
        codes = CodeSet(labels.codes, G.num_ws, G.w_dim, sha256=generator_shas(G), strict=True)
        w_plus = codes_of_records(table, codes)
        info["codes"] = labels.codes
    else:
        if code_source is None:
            raise ValueError(
                "labels=images needs codes: labels.codes=<an lsap-invert run folder>, or "
                "code_source=encoder code_source.encoder=<file>"
            )
        source = build_code_source(code_source, G)
        if source.init != "encoder" or source.optimize:
            raise ValueError(
                "labels=images codes the images with an encoder only (code_source=encoder); "
                "for optimised codes run lsap-invert first and give labels.codes=<its run folder>"
            )
        source.to(device)
        w_plus = encode_files(
            files,
            table.names,
            lambda names, images: source.start(names, images).w_plus,
            resolution=G.resolution,
            batch_size=labels.batch_size,
            device=device,
            box=G.crop.box_at(G.resolution) if G.crop is not None else None,
        )
        info["code_source"] = source.describe()
    return w_plus, table.values, table.attributes, table.kinds, info


def run(cfg: DictConfig) -> dict:
    """Fit the directions ``cfg`` describes; write and return directions.json's contents."""
    s = DirectionsSettings.from_config(cfg)  # the one reading of the config
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    device = resolve_device(s.device)
    G = generator_from_config(s.generator, device).eval().requires_grad_(False)
    if isinstance(s.labels, SampleLabels):
        codes, labels, attributes, kinds, info = from_samples(s.labels, G, device)
    else:
        codes, labels, attributes, kinds, info = from_images(s.labels, s.code_source, G, device)
    try:
        fits = fit_directions(codes, labels, attributes, kinds, s.fit)
    except ValueError as e:
        if s.labels.source == "images":  # labels that cannot be fitted are the labels file's
            raise LsapFileError(info["labels_csv"], str(e)) from None
        raise
    summary = {
        "labels": info,
        "num_samples": int(codes.shape[0]),
        "fit": asdict(s.fit),
        "provenance": provenance(
            config=s.config,
            generator=G,
            seed=s.fit.split_seed,
            command="lsap-directions " + " ".join(sys.argv[1:]),
        ),
    }
    result = write_directions(s.output_dir, fits, summary)
    for fit in fits:
        value = "n/a" if fit.value is None else f"{fit.value:.3f}"
        log.info("%-12s %-6s held-out %s %s", fit.attribute, fit.kind, fit.metric, value)
    log.info("wrote %d directions to %s", len(fits), Path(s.output_dir) / "directions")
    return result


@hydra.main(config_path=config_dir(), config_name="directions", version_base="1.3")
@one_line_errors("lsap-directions", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("directions")
    _main()


if __name__ == "__main__":
    main()
