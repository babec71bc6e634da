"""InterFaceGAN: move codes along a linear attribute boundary's normal (age, smile, pose, ...).

Direction files as the inversion toolboxes ship them: ``.pt`` (a tensor, or a dict holding one)
or ``.npy``, shaped [w_dim], [1, w_dim] (the e4e/GANInverter ``age.pt``/``smile.pt``/``pose.pt``),
[num_ws, w_dim] or [1, num_ws, w_dim] (per-layer directions). A W direction is applied to every
edited layer; a per-layer one row by row. Directions are used as stored (InterFaceGAN's are unit
normals), so a factor is a distance in W.

:func:`fit_direction` makes such a direction: a linear model of an attribute in W (L2-regularised
logistic regression for binary labels, ridge least squares for scalar ones), whose hyperplane
normal is the edit direction, as InterFaceGAN fits a linear SVM on labelled generator samples.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lsap.assets import resolve as resolve_asset
from lsap.core.errors import LsapFileError
from lsap.editing.edit import Edit, LayerSpec, resolve_layers, restrict

DIRECTION_KEYS = ("direction", "boundary", "w", "latent")
FIT_KINDS = ("binary", "scalar")
DIRECTION_SUFFIXES = (".pt", ".pth", ".npy")


def read_direction(path: str | Path) -> Tensor:
    """The raw direction array in ``path`` as float32 on the CPU (no shape check).

    Raises:
        LsapFileError naming the file: missing, unreadable, refused by the weights-only loader, or
        holding no single floating-point array.
    """
    from lsap.assets import resolve

    path = resolve(path)
    if not path.is_file():
        raise LsapFileError(path, "no such file (edit direction)")
    suffix = path.suffix.lower()
    if suffix not in DIRECTION_SUFFIXES:
        raise LsapFileError(
            path, f"not a direction file (expected one of {', '.join(DIRECTION_SUFFIXES)})"
        )
    try:
        if suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise LsapFileError(path, f"not a readable {suffix} file ({type(e).__name__})") from None
    except Exception as e:  # the weights-only unpickler raises its own error types
        raise LsapFileError(path, f"refused or unreadable ({type(e).__name__})") from None
    if isinstance(obj, Mapping):
        found = [k for k in DIRECTION_KEYS if k in obj]
        if found:
            obj = obj[found[0]]
        elif len(obj) == 1:
            obj = next(iter(obj.values()))
        else:
            raise LsapFileError(
                path, f"holds keys {sorted(obj)[:6]}; expected one array or one of {DIRECTION_KEYS}"
            )
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind != "f":
            raise LsapFileError(path, f"direction has dtype {obj.dtype}, expected floats")
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, Tensor) or not obj.is_floating_point():
        raise LsapFileError(path, f"holds a {type(obj).__name__}, not a float tensor")
    return obj.detach().float().cpu()


def check_direction(
    direction: Tensor, num_ws: int, w_dim: int, path: str | Path = "<direction>"
) -> Tensor:
    """A direction as [num_ws, w_dim] (a W direction repeated on every layer).

    Raises:
        LsapFileError naming ``path`` for any other shape or NaN/inf values.
    """
    d = direction
    if d.ndim == 3 and d.shape[0] == 1:  # [1, num_ws, w_dim]
        d = d[0]
    if d.ndim == 2 and d.shape[0] == 1:  # [1, w_dim], as e4e/GANInverter store them
        d = d[0]
    if d.ndim == 1 and d.shape[0] == w_dim:
        d = d.unsqueeze(0).expand(num_ws, -1)
    elif not (d.ndim == 2 and d.shape == (num_ws, w_dim)):
        raise LsapFileError(
            path,
            f"direction has shape {list(direction.shape)}; this generator needs [{w_dim}], "
            f"[1, {w_dim}] or [{num_ws}, {w_dim}]",
        )
    if not torch.isfinite(d).all():
        raise LsapFileError(path, "direction contains NaN or inf")
    return d.contiguous()


def interfacegan_edit(
    direction: str | Path | Tensor,
    num_ws: int,
    w_dim: int,
    *,
    layers: LayerSpec = None,
    name: str | None = None,
) -> Edit:
    """An InterFaceGAN edit: ``w+[:, layers] += factor * direction``.

    Args:
        direction: a direction file (see the module docstring; ``asset:<name>`` for a packaged
            one, e.g. ``asset:toy32/directions/smile.pt``) or a tensor of those shapes.
        num_ws, w_dim: the generator's sizes (``G.num_ws``, ``G.w_dim``).
        layers: w+ layers to edit (see :func:`lsap.editing.resolve_layers`); None = all.
        name: label; default ``interfacegan/<file stem>``.
    """
    path = resolve_asset(direction) if isinstance(direction, str | Path) else None
    raw = read_direction(path) if path is not None else direction.detach().float().cpu()
    full = check_direction(raw, num_ws, w_dim, path or "<direction>")
    idx = resolve_layers(layers, num_ws)
    label = name or f"interfacegan/{path.stem if path is not None else 'direction'}"
    return Edit(
        name=label,
        direction=restrict(full, idx),
        layers=idx,
        info={
            "method": "interfacegan",
            "source": str(path) if path is not None else None,
            "norm": float(raw.norm()),
        },
    )


def fit_direction(
    w: Tensor,
    labels: Tensor,
    *,
    kind: str,
    l2: float,
    balanced: bool,
    max_iter: int,
    rcond: float = 1e-8,
) -> Tensor:
    """The unit normal of a linear attribute boundary in W (InterFaceGAN's direction).

    W is whitened (centred, rotated onto the principal axes of its sample covariance and scaled to
    unit variance; eigenvalues below ``rcond`` times the largest are clamped), a linear model is
    fitted there, and its coefficients are mapped back to W coordinates: the result is the
    gradient of the model's score in W, i.e. the normal of its level sets (the boundary). In
    whitened coordinates the L2 penalty shrinks towards ``Sigma^-1 (mu_1 - mu_0)``, which is
    parallel to the true normal when W is elliptically distributed and the label depends on one
    projection, so the penalty does not tilt the normal towards W's high-variance axes (as it
    does for a penalty on raw or per-dimension standardised coefficients).

    - ``kind="binary"``: L2-regularised logistic regression, fitted in float64 with L-BFGS
      (strong-Wolfe line search) to ``mean_i c_i * BCE(x_i . b + b0, y_i) + l2/2 * |b|^2``;
      ``balanced`` weights both classes equally (``c_i = N / (2 N_class)``), so a rare attribute
      still gets a boundary between the classes rather than one that ignores them.
    - ``kind="scalar"``: ridge least squares, closed form,
      ``b = (X^T X / N + l2 I)^-1 X^T (y - mean y) / N`` (on whitened X: the least-squares
      direction, ``l2`` only scales it).

    Args:
        w: W codes [N, w_dim] (not W+), any float dtype; not modified.
        labels: [N]; binary: 0/1 (bool or numbers); scalar: any finite values.
        kind: "binary" or "scalar".
        l2: penalty on the whitened coefficients (> 0 keeps separable data finite; small values
            approach the maximum-margin boundary on separable labels).
        balanced: binary only, see above.
        max_iter: L-BFGS iterations (binary only).
        rcond: relative floor of the covariance eigenvalues (near-singular W).

    Returns:
        float32 [w_dim] on ``w``'s device, unit L2 norm, pointing towards label 1 (binary) or
        larger values (scalar).

    Raises:
        ValueError: shapes that do not match, non-finite inputs, fewer than two samples, binary
            labels other than 0/1 or only one class, constant scalar labels, an unknown ``kind``.
    """
    if kind not in FIT_KINDS:
        raise ValueError(f"kind must be one of {FIT_KINDS}, got {kind!r}")
    if w.ndim != 2 or labels.ndim != 1 or labels.shape[0] != w.shape[0]:
        raise ValueError(
            f"expected w [N, w_dim] and labels [N], got {tuple(w.shape)} and {tuple(labels.shape)}"
        )
    if w.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {w.shape[0]}")
    x = w.detach().to("cpu", torch.float64)
    y = labels.detach().to("cpu", torch.float64)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("w and labels must be finite")
    # whitened, so that the penalty does not tilt the normal (see the docstring)
    mean = x.mean(0)
    xc = x - mean
    evals, evecs = torch.linalg.eigh(xc.T @ xc / x.shape[0])  # [w_dim], [w_dim, w_dim]
    evals = evals.clamp_min(evals.max().clamp_min(1e-300) * rcond)
    whiten = evecs / evals.sqrt()  # [w_dim, w_dim]: W coordinates -> whitened
    xs = xc @ whiten  # [N, w_dim], mean 0, covariance I (on the kept spectrum)
    n, d = xs.shape
    if kind == "scalar":
        if y.std() == 0:
            raise ValueError("scalar labels are constant: no direction to fit")
        gram = xs.T @ xs / n + l2 * torch.eye(d, dtype=xs.dtype)
        coef = torch.linalg.solve(gram, xs.T @ (y - y.mean()) / n)
    else:
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("binary labels must be 0 or 1 (threshold probabilities first)")
        n_pos = float(y.sum())
        if n_pos in (0.0, float(n)):
            raise ValueError("binary labels hold only one class: no boundary to fit")
        if balanced:
            weight = torch.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
        else:
            weight = torch.ones_like(y)
        coef = torch.zeros(d, dtype=xs.dtype, requires_grad=True)
        bias = torch.zeros((), dtype=xs.dtype, requires_grad=True)
        opt = torch.optim.LBFGS(
            [coef, bias],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            logits = xs @ coef + bias
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y, weight=weight, reduction="mean"
            )
            loss = bce + 0.5 * l2 * coef.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        coef = coef.detach()
    normal = whiten @ coef  # the score's gradient in W coordinates
    norm = normal.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("the fitted boundary is degenerate (zero or non-finite normal)")
    return (normal / norm).to(w.device, torch.float32)
