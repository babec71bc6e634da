"""Files shipped inside the package (trained toy models), addressed as ``asset:<name>``.

``lsap/assets/toy32/``: a 32 px StyleGAN2 trained on ``lsap.data.toy`` faces, its attribute
classifier and ``manifest.json`` (sha256 of each file, training command, config, steps, losses).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from lsap.core.errors import LsapFileError

ASSETS_DIR = Path(__file__).resolve().parent
ASSET_PREFIX = "asset:"


def asset_path(name: str) -> Path:
    """Absolute path of the packaged file ``name`` (e.g. ``"toy32/generator.pt"``).

    Raises:
        LsapFileError: the name leaves the assets folder, or no such file is packaged.
    """
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise LsapFileError(name, "asset names are relative paths inside lsap/assets")
    path = ASSETS_DIR.joinpath(*rel.parts)
    if not path.is_file():
        raise LsapFileError(
            f"{ASSET_PREFIX}{name}", f"no such packaged asset (looked in {ASSETS_DIR})"
        )
    return path


def resolve(path: str | Path) -> Path:
    """``asset:<name>`` -> :func:`asset_path` (name); any other path is returned as a Path."""
    s = str(path)
    return asset_path(s[len(ASSET_PREFIX) :]) if s.startswith(ASSET_PREFIX) else Path(s)
