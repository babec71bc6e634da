"""Interactive edits in Jupyter: one slider per edit over a rendered code (ipywidgets, optional).

ipywidgets is not a dependency of lsap: :func:`widgets_available` says whether it is installed,
and :func:`edit_sliders` raises ImportError without it (notebooks then show factor grids).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lsap.data.images import tensor_to_pil
from lsap.editing.build import EditSpec
from lsap.nets.crop import crop_valid
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import synthesize

SLIDER_STEPS = 40  # positions of a slider between its smallest and largest factor


def widgets_available() -> bool:
    """Whether ipywidgets is installed (``pip install ipywidgets``)."""
    return importlib.util.find_spec("ipywidgets") is not None


def combine_edits(w_plus: Tensor, edits: Sequence[EditSpec], factors: Sequence[float]) -> Tensor:
    """Apply several edits one after the other; an edit whose factor is 0 is left out (for
    relative edits that is the identity; an absolute edit only acts once its slider moves).

    Args:
        w_plus: [N, num_ws, w_dim].
        edits: the edits, each with the factor range it was built for.
        factors: one factor per edit.

    Returns:
        [N, num_ws, w_dim].
    """
    if len(edits) != len(factors):
        raise ValueError(f"{len(factors)} factors for {len(edits)} edits")
    for spec, f in zip(edits, factors, strict=True):
        if float(f) != 0.0:
            w_plus = spec.edit(w_plus, float(f))
    return w_plus


def png_bytes(image: Tensor) -> bytes:
    """[3, H, W] in [-1, 1] -> PNG bytes."""
    buf = io.BytesIO()
    tensor_to_pil(image).save(buf, "PNG")
    return buf.getvalue()


def edit_sliders(
    G: Generator,
    w_plus: Tensor,
    edits: Sequence[EditSpec],
    *,
    noise: Sequence[Tensor] | None = None,
    display_size: int = 256,
) -> Any:
    """A widget with the image of one code and a slider per edit (factors from each edit's range).

    Moving a slider re-renders ``G.synthesis(combine_edits(w_plus, edits, slider values))``.

    Args:
        G: the generator.
        w_plus: one code [1, num_ws, w_dim] (or [num_ws, w_dim]) on G's device.
        edits: e.g. from ``lsap.editing.build_edits``.
        noise: the code's noise maps, one [1, 1, R, R] per synthesis conv, or None (G's own).
        display_size: displayed side of the image in pixels.

    Returns:
        An ``ipywidgets.VBox`` (image first, then the sliders); ``.sliders`` and ``.image`` give
        the parts.

    Raises:
        ImportError: ipywidgets is not installed.
    """
    import ipywidgets as widgets

    if w_plus.ndim == 2:
        w_plus = w_plus.unsqueeze(0)
    if w_plus.shape[0] != 1:
        raise ValueError(f"edit_sliders shows one code, got {w_plus.shape[0]}")
    if not edits:
        raise ValueError("edit_sliders needs at least one edit")
    sliders = []
    for spec in edits:
        lo, hi = min(spec.factors), max(spec.factors)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        step = (hi - lo) / SLIDER_STEPS if hi > lo else 0.1
        sliders.append(
            widgets.FloatSlider(
                value=0.0,
                min=lo,
                max=hi,
                step=step,
                description=spec.name,
                continuous_update=False,
                style={"description_width": "initial"},
            )
        )
    size = (display_size, display_size) if G.crop is None else G.crop.size_at(display_size)
    image = widgets.Image(format="png", width=size[1], height=size[0])  # the valid region

    def render(_: Any = None) -> None:
        with torch.no_grad():
            w = combine_edits(w_plus, edits, [s.value for s in sliders])
            image.value = png_bytes(crop_valid(synthesize(G, w, noise)[0], G.crop))

    for s in sliders:
        s.observe(render, names="value")
    render()
    box = widgets.VBox([image, *sliders])
    box.sliders, box.image = sliders, image
    return box
