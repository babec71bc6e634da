"""GANSpace: principal components of mapped W samples as edit directions.

The PCA is exact and streamed: sums of w and of w w^T over ``num_samples`` mapped z ~ N(0, I)
(float64, memory O(w_dim^2)), then an eigendecomposition of the covariance. Components are unit
vectors by decreasing variance; each is signed so that its largest-magnitude entry is positive
(the sign of a principal component is otherwise arbitrary). Results are cached by generator
sha256, sample count and seed.

An edit is (component, layer range, strength), as in the GANSpace paper's named edits:
``w+[:, layers] += strength * std_c * v_c`` (``mode="relative"``, strength in standard deviations;
strength 0 leaves the code unchanged), or, with ``mode="absolute"`` (the "centred" form e4e and
GANInverter use for named edits such as (54, 7:8, 20)), the code's coordinate along ``v_c`` on each
edited layer is set to ``strength`` standard deviations from the mean. Component indices of
published named edits refer to the PCA file released with them (load it with :func:`load_pca`);
a freshly computed PCA may order or sign components differently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.cache import read_cache
from lsap.core.errors import LsapFileError
from lsap.editing.edit import Edit, LayerSpec, resolve_layers, restrict
from lsap.nets.sampling import iter_w
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)

GANSPACE_MODES = ("relative", "absolute")


@dataclass(frozen=True)
class PCA:
    """Principal components of W.

    Attributes:
        mean: [w_dim] mean of the samples.
        components: [K, w_dim] orthonormal rows, by decreasing variance.
        std: [K] standard deviation of the samples along each component.
        info: how it was made (generator sha256, num_samples, seed, or the source file).
    """

    mean: Tensor
    components: Tensor
    std: Tensor
    info: dict = field(default_factory=dict)

    @property
    def w_dim(self) -> int:
        return self.components.shape[1]

    def __len__(self) -> int:
        return self.components.shape[0]


def pca_cache_path(cache_dir: str | Path, sha256: str, num_samples: int, seed: int) -> Path:
    return Path(cache_dir).expanduser() / f"ganspace-{sha256[:16]}-n{num_samples}-seed{seed}.pt"


def _fix_signs(components: Tensor) -> Tensor:
    """Sign each row so that its largest-magnitude entry is positive."""
    idx = components.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(components.gather(1, idx))
    return components * torch.where(sign == 0, torch.ones_like(sign), sign)


@torch.no_grad()
def pca_of_samples(samples: Tensor | list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Exact PCA of samples given in one or more batches [B, D].

    Returns:
        ``(mean [D], components [D, D], std [D])`` float32, components by decreasing variance.
    """
    batches = [samples] if isinstance(samples, Tensor) else list(samples)
    total, outer, n = None, None, 0
    for x in batches:
        x = x.double()
        s, o = x.sum(0), x.T @ x
        total = s if total is None else total + s
        outer = o if outer is None else outer + o
        n += x.shape[0]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {n}")
    return _finish(total, outer, n)


def _finish(total: Tensor, outer: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    components = _fix_signs(vectors.T.contiguous())
    return mean.float(), components.float(), values.clamp_min(0).sqrt().float()


@torch.no_grad()
def compute_pca(
    G: Generator,
    num_samples: int,
    seed: int,
    *,
    num_components: int | None = None,
    batch_size: int = 10_000,
    cache_dir: str | Path | None = None,
) -> PCA:
    """PCA of ``num_samples`` mapped samples w = f(z), z ~ N(0, I) (no truncation).

    Args:
        G: generator (its ``sha256`` keys the cache).
        num_samples: number of samples (drawn on the CPU from ``seed``: the same on every device).
        seed: seed of the z samples.
        num_components: keep the first K components (None = all w_dim).
        batch_size: samples mapped per batch.
        cache_dir: folder of ``ganspace-<sha[:16]>-n<N>-seed<seed>.pt``; None = no cache. A cache
            file is used only when its sha256, sample count, seed and w_dim match.

    Returns:
        :class:`PCA` on the CPU.
    """
    if num_components is not None and not 1 <= num_components <= G.w_dim:
        raise ValueError(f"num_components must be in 1..{G.w_dim}, got {num_components}")
    path = None
    pca = None
    if cache_dir is not None and G.sha256:
        path = pca_cache_path(cache_dir, G.sha256, num_samples, seed)
        pca = _read_cache(path, G, num_samples, seed)
    if pca is None:
        total = torch.zeros(G.w_dim, dtype=torch.float64, device=G.w_avg.device)
        outer = torch.zeros(G.w_dim, G.w_dim, dtype=torch.float64, device=G.w_avg.device)
        for w in iter_w(G, num_samples, seed=seed, batch_size=batch_size):
            w = w.double()
            total += w.sum(0)
            outer += w.T @ w
        mean, comp, std = _finish(total.cpu(), outer.cpu(), num_samples)
        info = {"generator_sha256": G.sha256, "num_samples": num_samples, "seed": seed}
        pca = PCA(mean, comp, std, info)
        if path is not None:
            atomic_torch_save(path, {"mean": mean, "components": comp, "std": std, **info})
            log.info("cached GANSpace PCA at %s", path)
    if num_components is not None:
        pca = PCA(pca.mean, pca.components[:num_components], pca.std[:num_components], pca.info)
    return pca


def _read_cache(path: Path, G: Generator, num_samples: int, seed: int) -> PCA | None:
    expected = {"generator_sha256": G.sha256, "num_samples": num_samples, "seed": seed}
    obj = read_cache(
        path,
        "GANSpace",
        expected,
        fits=lambda o: tuple(o["components"].shape) == (G.w_dim, G.w_dim),
    )
    if obj is None:
        return None
    return PCA(obj["mean"], obj["components"], obj["std"], {k: obj[k] for k in expected})


def load_pca(path: str | Path) -> PCA:
    """Read a PCA file: GANSpace/e4e layout ``{'mean' [1, D] or [D], 'comp' [K, 1, D] or [K, D],
    'std' [K]}`` or lsap's cache layout (``components`` instead of ``comp``).

    Raises:
        LsapFileError naming the file: missing, unreadable, keys or shapes that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise LsapFileError(path, "no such file (GANSpace PCA)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LsapFileError(path, f"not a readable PCA file ({type(e).__name__})") from None
    if not isinstance(obj, Mapping):
        raise LsapFileError(
            path, f"holds a {type(obj).__name__}, expected a dict with mean/comp/std"
        )
    comp = obj.get("comp", obj.get("components"))
    mean, std = obj.get("mean"), obj.get("std")
    if not all(isinstance(t, Tensor) for t in (comp, mean, std)):
        raise LsapFileError(
            path, "expected tensors under 'mean', 'comp' (or 'components') and 'std'"
        )
    comp = comp.float().reshape(comp.shape[0], -1)
    mean, std = mean.float().reshape(-1), std.float().reshape(-1)
    K, D = comp.shape
    if mean.shape[0] != D or std.shape[0] != K:
        raise LsapFileError(
            path,
            f"shapes do not fit: comp {list(comp.shape)}, mean {list(mean.shape)}, std {list(std.shape)}",
        )
    return PCA(mean, comp, std, {"source": str(path)})


def ganspace_edit(
    pca: PCA,
    component: int,
    num_ws: int,
    *,
    layers: LayerSpec = None,
    mode: str = "relative",
    name: str | None = None,
) -> Edit:
    """A GANSpace edit along principal component ``component`` on ``layers`` (None = all).

    The factor of the returned :class:`Edit` is the strength in standard deviations (see the
    module docstring for ``mode``).
    """
    if mode not in GANSPACE_MODES:
        raise ValueError(f"GANSpace mode must be one of {GANSPACE_MODES}, got {mode!r}")
    if not 0 <= component < len(pca):
        raise ValueError(f"component {component} is outside the PCA's {len(pca)} components")
    idx = resolve_layers(layers, num_ws)
    d = (pca.std[component] * pca.components[component]).expand(num_ws, -1)
    return Edit(
        name=name or f"ganspace/pc{component}",
        direction=restrict(d, idx),
        layers=idx,
        absolute=mode == "absolute",
        mean=pca.mean.float() if mode == "absolute" else None,
        info={
            "method": "ganspace",
            "component": component,
            "std": float(pca.std[component]),
            "mode": mode,
            **{f"pca_{k}": v for k, v in pca.info.items()},
        },
    )
