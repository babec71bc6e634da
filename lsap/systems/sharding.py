"""Which images a (possibly distributed, possibly resumed) inversion run still has to do, and which
process does each: every image exactly once, none twice, none skipped.

Rank 0 lists the input and the finished codes and broadcasts the plan (so every process shards the
same list even while others already write); process r takes items r, r + world, r + 2 world, ...
with no padding (Lightning's DistributedSampler pads with duplicates, which we must not do).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

from lsap.core.errors import LsapFileError, refusal_reason
from lsap.data.images import list_images
from lsap.inversion.settings import first_difference, result_settings
from lsap.io.inversion_layout import code_path, finished_names
from lsap.io.inversions import image_name


@dataclass(frozen=True)
class InversionPlan:
    """The images of a run: ``todo`` (path, name) pairs in order, and how many were already done."""

    todo: tuple[tuple[str, str], ...]
    num_images: int
    num_done: int


def plan_inversion(
    input_path: str | Path,
    output_dir: str | Path,
    generator_sha256: str | None = None,
    refinement: str | None = None,
    code_source: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> InversionPlan:
    """List the input images and drop those with a finished code file in ``output_dir``.

    Args:
        generator_sha256: this run's generator; a folder holding codes of another is refused.
        refinement: this run's refinement ("none", "pti"); a folder whose finished images were
            refined otherwise is refused (its finished images would not match the new ones).
        code_source: this run's code source name (``optimize``, ``encoder``, ...); a folder whose
            finished images got their codes otherwise is refused, for the same reason.
        settings: everything else that changes this run's results
            (``lsap.inversion.settings.result_settings``); a folder whose finished images were made
            with other values is refused, naming the first differing key (nothing is written).

    Raises:
        LsapFileError: the input is missing or holds no images; two inputs map to the same output
            name; or ``output_dir`` holds codes of a different generator, code source, refinement or
            other settings.
    """
    root = Path(input_path)
    files = list_images(root)
    names: dict[str, Path] = {}
    for f in files:
        name = image_name(f, root)
        if name in names:
            raise LsapFileError(
                f, f"has the same output name '{name}' as {names[name]}; rename one of them"
            )
        names[name] = f
    done = finished_names(output_dir) & names.keys()
    if done and (generator_sha256 or refinement or code_source or settings):
        _check_same_run(
            code_path(output_dir, min(done)), generator_sha256, refinement, code_source, settings
        )
    todo = tuple((str(f), n) for n, f in names.items() if n not in done)
    return InversionPlan(todo=todo, num_images=len(files), num_done=len(done))


def _check_same_run(
    path: Path,
    sha256: str | None,
    refinement: str | None,
    code_source: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    try:
        prov = torch.load(path, map_location="cpu", weights_only=True).get("provenance", {})
    except Exception as e:
        raise LsapFileError(
            path, f"unreadable code file of an earlier run ({refusal_reason(e)})"
        ) from None
    earlier = str(prov.get("refinement") or "none")  # files from before refinement existed: none
    if refinement and earlier != refinement:
        raise LsapFileError(
            path.parent.parent,
            f"holds results of refinement={earlier}, this run uses refinement={refinement}; use "
            "another output directory (code_source=codes code_source.codes=<this folder> reuses its codes)",
        )
    source = prov.get("code_source")  # files from before code sources existed: optimize
    earlier = str(source.get("name") if isinstance(source, dict) else "optimize")
    if code_source and earlier != code_source:
        raise LsapFileError(
            path.parent.parent,
            f"holds codes of code_source={earlier}, this run uses code_source={code_source}; "
            "use another output directory",
        )
    found = prov.get("generator_sha256")
    if sha256 and found and found != sha256:
        raise LsapFileError(
            path.parent.parent,
            f"holds codes of generator {found[:12]}, this run's is {sha256[:12]}; "
            "use another output directory",
        )
    config = prov.get("config")
    if settings is None or not isinstance(config, Mapping) or not isinstance(source, Mapping):
        return  # files written before their provenance recorded config and code source
    earlier_settings = result_settings(config, source)
    key = first_difference(earlier_settings, settings)
    if key is not None:
        raise LsapFileError(
            path.parent.parent,
            f"holds results made with {key}={_shown(earlier_settings, key)}, this run has "
            f"{key}={_shown(settings, key)}; use another output directory, or the earlier "
            "settings to resume",
        )


def _shown(settings: Mapping[str, Any], key: str) -> str:
    return repr(settings[key]) if key in settings else "<unset>"


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of a dataset of ``length`` items (no padding)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.indices: Sequence[int] = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
