"""The normalised style space S^N: each layer's style vector scaled to unit L2 norm."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

NORM_EPS = 1e-12


def normalize_styles(styles: Sequence[Tensor]) -> list[Tensor]:
    """``n_i = s_i / ||s_i||_2`` per layer.

    Args:
        styles: list of ``s_i [N, C_i]`` (``Generator.style_space``).

    Returns:
        list of ``n_i [N, C_i]`` with unit norm rows.
    """
    return [s / s.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS) for s in styles]
