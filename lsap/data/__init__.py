"""Data: image files -> tensors (bad files reported and skipped), and datasets built on them."""

from lsap.data.images import (
    IMAGE_SUFFIXES,
    ImageFileDataset,
    ImageItem,
    collate_images,
    list_images,
    load_image,
    save_image,
    tensor_to_pil,
    tensor_to_uint8,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFileDataset",
    "ImageItem",
    "collate_images",
    "list_images",
    "load_image",
    "save_image",
    "tensor_to_pil",
    "tensor_to_uint8",
]
