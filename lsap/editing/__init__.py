"""Latent editing: InterFaceGAN directions, GANSpace (PCA of W), SeFa (closed-form factorisation).

Every method yields an :class:`Edit`, ``edit(w_plus [N, num_ws, w_dim], factor) -> w_plus``.
"""

from lsap.editing.build import EditSpec, build_edits, describe_edits
from lsap.editing.edit import Edit, factor_key, layer_mask, resolve_layers
from lsap.editing.ganspace import PCA, compute_pca, ganspace_edit, load_pca, pca_of_samples
from lsap.editing.interfacegan import (
    check_direction,
    fit_direction,
    interfacegan_edit,
    read_direction,
)
from lsap.editing.sefa import modulation_weights, sefa, sefa_edits

__all__ = [
    "PCA",
    "Edit",
    "EditSpec",
    "build_edits",
    "check_direction",
    "compute_pca",
    "describe_edits",
    "factor_key",
    "fit_direction",
    "ganspace_edit",
    "interfacegan_edit",
    "layer_mask",
    "load_pca",
    "modulation_weights",
    "pca_of_samples",
    "read_direction",
    "resolve_layers",
    "sefa",
    "sefa_edits",
]
