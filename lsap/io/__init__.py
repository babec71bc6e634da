"""Files: generator checkpoints (rosinality, NVlabs, pSp/e4e, GANInverter, lsap, deltas), codes, atomic writes."""

from lsap.core.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from lsap.core.errors import CheckpointError, LsapFileError
from lsap.core.hashing import file_sha256, tensors_sha256
from lsap.io.checkpoints import (
    generator_from_config,
    init_generator,
    load_generator,
    read_generator_state,
    save_generator,
    save_rosinality,
)
from lsap.io.codes import check_codes, load_codes, read_codes
from lsap.io.generator_delta import (
    apply_generator_delta,
    check_disk_budget,
    estimate_delta_nbytes,
    save_generator_delta,
)

__all__ = [
    "CheckpointError",
    "LsapFileError",
    "apply_generator_delta",
    "atomic_torch_save",
    "atomic_write_json",
    "atomic_write_text",
    "check_codes",
    "check_disk_budget",
    "estimate_delta_nbytes",
    "file_sha256",
    "generator_from_config",
    "init_generator",
    "load_codes",
    "load_generator",
    "read_codes",
    "read_generator_state",
    "save_generator",
    "save_generator_delta",
    "save_rosinality",
    "tensors_sha256",
]
