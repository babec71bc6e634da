"""The jobs of a Hydra multirun folder of ``lsap-invert`` (LSAP_O) or ``lsap-train`` (LSAP_E) runs.

Layouts read (the same for the basic launcher, local DDP jobs and submitit / SLURM)::

    <sweep_dir>/multirun.yaml               the sweep's overrides (Hydra): how many jobs there are
    <sweep_dir>/<subdir>/.hydra/config.yaml each job's resolved config (loss.sncd, ...)
    <sweep_dir>/<subdir>/.hydra/hydra.yaml  its job number and config name (invert | train)
    <sweep_dir>/<subdir>/.hydra/overrides.yaml
    <sweep_dir>/.submitit/<id>/...          submitit's logs (ignored)

``<subdir>`` is whatever ``hydra.sweep.subdir`` made of the job (``<num>_<overrides>`` for
lsap-invert, ``<num>`` for lsap-train); jobs are found by their ``.hydra`` folder, at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsap.core.errors import LsapFileError

INVERT, TRAIN = "invert", "train"
KINDS = (INVERT, TRAIN)
SKIP_DIRS = (".submitit", ".hydra", "codes", "reconstructions", "checkpoints", "wandb", "csv")


@dataclass
class SweepJob:
    """One job of a multirun.

    Attributes:
        folder: the job's run folder.
        num: its Hydra job number (None when its hydra.yaml does not say).
        kind: ``invert`` (codes and results.csv) or ``train`` (an encoder).
        config: the job's resolved config as plain values.
        overrides: the job's command-line overrides, ``key -> value`` text.
        choices: the config group options it composed (``generator: toy32``, ...).
    """

    folder: Path
    num: int | None
    kind: str
    config: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)

    @property
    def sncd_weight(self) -> float:
        return float(self.config.get("loss", {}).get("sncd", 0.0) or 0.0)

    @property
    def sncd_mode(self) -> str:
        opts = (self.config.get("loss", {}).get("options") or {}).get("sncd") or {}
        return str(opts.get("mode", "reference"))


def _load_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    try:
        node = OmegaConf.load(path)
    except Exception as e:
        raise LsapFileError(path, f"unreadable YAML ({e})") from None
    return node


def _plain_config(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf, open_dict

    node = _load_yaml(path)
    # the saved config still holds ${hydra:runtime.output_dir}, which only a running Hydra job
    # resolves (to the job's folder): put that folder in, then resolve (env defaults included)
    if "paths" in node and "output_dir" in node.paths:
        with open_dict(node):
            node.paths.output_dir = str(path.parent.parent)
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    except Exception:
        return OmegaConf.to_container(node, resolve=False)


def _overrides(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for item in _load_yaml(path) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_job(folder: str | Path) -> SweepJob | None:
    """The job in ``folder`` (which holds ``.hydra/config.yaml``), or None when that config is not
    an lsap-invert or lsap-train run (e.g. a report written into the sweep folder)."""
    folder = Path(folder)
    config = _plain_config(folder / ".hydra" / "config.yaml")
    num, name, choices = None, None, {}
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        hydra = _load_yaml(hydra_file).get("hydra") or {}
        job = hydra.get("job") or {}
        num = job.get("num")
        name = job.get("config_name")
        choices = {
            str(k): str(v) for k, v in ((hydra.get("runtime") or {}).get("choices") or {}).items()
        }
    if name not in KINDS:  # older layouts: tell the commands apart by their config groups
        if "loss" in config and "code_source" in config:
            name = INVERT
        elif "loss" in config and "encoder" in config and "optimizer" in config:
            name = TRAIN
        else:
            return None
    return SweepJob(
        folder=folder,
        num=int(num) if num is not None else None,
        kind=str(name),
        config=config,
        overrides=_overrides(folder / ".hydra" / "overrides.yaml"),
        choices=choices,
    )


def _job_folders(root: Path) -> list[Path]:
    out = []
    stack = [root]
    while stack:
        d = stack.pop()
        if (d / ".hydra" / "config.yaml").is_file():
            out.append(d)
            continue  # a job folder holds no further jobs
        stack.extend(
            p for p in sorted(d.iterdir(), reverse=True) if p.is_dir() and p.name not in SKIP_DIRS
        )
    return out


def expected_jobs(sweep_dir: str | Path) -> list[dict[str, str]] | None:
    """The overrides of every job the sweep launched (from ``multirun.yaml``, in job-number order),
    or None when the folder has no ``multirun.yaml`` (e.g. a folder of single runs)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    hydra = _load_yaml(path).get("hydra") or {}
    params = (hydra.get("sweeper") or {}).get("params") or {}
    params = (
        OmegaConf.to_container(params, resolve=False) if OmegaConf.is_config(params) else params
    )
    task = list((hydra.get("overrides") or {}).get("task") or [])
    lines = [f"{k}={v}" for k, v in dict(params).items()] + [str(t) for t in task]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception as e:
        raise LsapFileError(path, f"cannot expand the sweep's overrides ({e})") from None
    jobs = [job for batch in batches for job in batch]
    return [dict(x.split("=", 1) for x in job) for job in jobs]


def find_jobs(sweep_dir: str | Path) -> list[SweepJob]:
    """Every lsap-invert / lsap-train job under ``sweep_dir``, by job number.

    Raises:
        LsapFileError: no such folder, no job in it, jobs of both commands mixed, or a job that
            ``multirun.yaml`` lists has no folder (it never started) -- named in one line.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise LsapFileError(root, "no such multirun folder")
    jobs = [j for j in (read_job(f) for f in _job_folders(root)) if j is not None]
    if not jobs:
        raise LsapFileError(root, "no lsap-invert or lsap-train job (no */.hydra/config.yaml)")
    kinds = sorted({j.kind for j in jobs})
    if len(kinds) > 1:
        raise LsapFileError(root, f"mixes jobs of {' and '.join(kinds)}; report them separately")
    expected = expected_jobs(root)
    if expected is not None:
        found = {j.num for j in jobs}
        missing = [i for i in range(len(expected)) if i not in found]
        if missing:
            what = ", ".join(f"#{i} ({_describe(expected[i])})" for i in missing[:4])
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            raise LsapFileError(
                root,
                f"{len(missing)} of {len(expected)} jobs have no folder (never started?): "
                f"{what}{more}",
            )
    return sorted(jobs, key=lambda j: (j.num if j.num is not None else 1 << 30, str(j.folder)))


def _describe(overrides: Mapping[str, str], keys: Sequence[str] = ("loss.sncd",)) -> str:
    shown = {k: v for k, v in overrides.items() if k in keys} or overrides
    return ",".join(f"{k}={v}" for k, v in shown.items())


def swept_keys(jobs: Sequence[SweepJob]) -> list[str]:
    """The override keys whose value differs between jobs (``loss.sncd`` first)."""
    keys: list[str] = []
    for j in jobs:
        keys += [k for k in j.overrides if k not in keys]
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return sorted(varying, key=lambda k: (k != "loss.sncd", k))
