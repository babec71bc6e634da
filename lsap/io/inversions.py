"""Read the results of an inversion: the ``lsap-invert`` output folder, folders of code files,
single code files, and folders of reconstructed images.

The ``lsap-invert`` layout (shared by every job that writes or reads inversions)::

    <dir>/codes/<name>.pt          one code record (:class:`CodeRecord`, which alone writes and reads it)
    <dir>/reconstructions/<name>.png
    <dir>/results.csv
    <dir>/refined/<name>.png       after result refinement (PTI): the tuned generator's image
    <dir>/pasted/<name>.png        data.align=true: the reconstruction pasted back into the photo
    <dir>/refined_pasted/<name>.png  ... and, after refinement, the refined image

``<name>`` is the image's path relative to the input root without suffix, ``/`` replaced by ``__``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.errors import LsapFileError
from lsap.data.paste import PhotoCrop
from lsap.io.codes import CODE_SUFFIXES, check_codes, read_codes

CODES_DIR = "codes"
RECONSTRUCTIONS_DIR = "reconstructions"
REFINED_DIR = "refined"  # reconstructions after result refinement (PTI)
PASTED_DIR = "pasted"  # aligned photos: the reconstruction blended back into the photo
REFINED_PASTED_DIR = "refined_pasted"  # ... and the refined image (PTI)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_name(path: str | Path, root: str | Path | None = None) -> str:
    """``<name>`` of an image: its path relative to ``root`` without suffix, ``/`` -> ``__``
    (the file's stem when ``root`` is None or the file itself)."""
    path = Path(path)
    if root is None or Path(root) == path or not Path(root).is_dir():
        return path.stem
    rel = path.relative_to(root)
    return "__".join(rel.with_suffix("").parts)


@dataclass
class CodeRecord:
    """One image's code file (``codes/<name>.pt``): the one place its dict is built and read.

    On disk (weights-only loadable)::

        {'w_plus' [1, num_ws, w_dim], 'noise' list of [1, 1, R, R] or None, 'image_path', 'name',
         'metrics' {name: float}, 'provenance' {generator_sha256, ...},
         ['refinement' {name, steps_run, settings}], ['generator' tuned generator delta, relative
         to the file's folder], ['photo_crop' {path, size [w, h], quad [[x, y] x 4]}],
         [further entries of ``extra``]}

    After result refinement (pivotal tuning) ``generator`` names the image's tuned generator
    (``'../generators/<name>.pt'``, a delta against the run's generator); the code itself is the
    pivot, unchanged.

    With ``data.align=true`` ``photo_crop`` records where the aligned image lies in its photo
    (``lsap.data.paste.PhotoCrop``), which is what pasting results back into the photo needs;
    files without it (not aligned, or written before it existed) read as None.

    Attributes:
        name: the image's ``<name>``.
        w_plus: [1, num_ws, w_dim] float32 (CPU); an ``lsap-edit`` file holds [F, num_ws, w_dim].
        noise: the optimised noise maps, list of [1, 1, R, R], or None.
        image_path: the original image, when known.
        metrics: per-image metrics ``{name: float}``.
        provenance: how the code was made (``lsap.core.provenance.provenance`` and per-image
            entries such as ``image_seed``).
        refinement: after result refinement: ``{name, steps_run, settings}``, else None.
        generator: the tuned generator (a generator delta file, absolute path) the code is
            rendered with after refinement, or None (the run's generator).
        photo_crop: the alignment of an aligned photo (:class:`lsap.data.paste.PhotoCrop`: the
            photo's path and size, the crop's quad), or None.
        source: the file the record was read from ("" for a record not read from disk).
        extra: further entries of the file (an ``lsap-edit`` file's ``factors``, ``edit``, ...).
    """

    name: str
    w_plus: Tensor
    noise: list[Tensor] | None = None
    image_path: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    refinement: dict[str, Any] | None = None
    generator: str | None = None
    photo_crop: PhotoCrop | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def generator_sha256(self) -> str | None:
        """The generator the code was made for, when recorded."""
        return _sha_of({"provenance": self.provenance})

    def to_dict(self, folder: str | Path) -> dict[str, Any]:
        """The file's dict; ``generator`` is written relative to ``folder`` (the file's folder)."""
        out: dict[str, Any] = {
            "w_plus": self.w_plus.detach().float().cpu().clone(),
            "noise": [n.detach().cpu().clone() for n in self.noise] if self.noise else None,
            "image_path": str(self.image_path) if self.image_path else "",
            "name": self.name,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "provenance": dict(self.provenance),
        }
        if self.refinement is not None:
            out["refinement"] = dict(self.refinement)
        if self.generator is not None:
            out["generator"] = os.path.relpath(self.generator, folder)
        if self.photo_crop is not None:
            out["photo_crop"] = self.photo_crop.to_dict()
        out.update(self.extra)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` atomically (its presence marks the image finished)."""
        path = Path(path)
        return atomic_torch_save(path, self.to_dict(path.parent))

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], path: str | Path, row: int | None = None
    ) -> CodeRecord:
        """The record of a loaded file (``row``: one code of a file of several, no per-image
        entries). ``obj['w_plus']`` must already be checked (``lsap.io.codes.check_codes``).

        Raises:
            LsapFileError naming ``path``: malformed ``noise``, ``generator``, ``metrics`` or
                ``photo_crop``.
        """
        path = Path(path)
        w = obj["w_plus"] if row is None else obj["w_plus"][row : row + 1]
        noise = obj.get("noise") if row is None else None
        if noise is not None and not (
            isinstance(noise, list | tuple) and all(isinstance(t, Tensor) for t in noise)
        ):
            raise LsapFileError(path, "'noise' must be a list of tensors or None")
        tuned = obj.get("generator") if row is None else None
        if tuned is not None and not isinstance(tuned, str):
            raise LsapFileError(path, "'generator' must be the path of a generator delta")
        metrics = obj.get("metrics") if row is None else None
        if metrics is not None and not isinstance(metrics, Mapping):
            raise LsapFileError(path, "'metrics' must be a dict of numbers")
        image_path = obj.get("image_path") if row is None else None
        prov = obj.get("provenance")
        refinement = obj.get("refinement") if row is None else None
        crop = obj.get("photo_crop") if row is None else None
        if crop is not None:
            if not isinstance(crop, Mapping):
                raise LsapFileError(path, "'photo_crop' must be a dict {path, size, quad}")
            try:
                crop = PhotoCrop.from_dict(crop)
            except ValueError as e:
                raise LsapFileError(path, f"'photo_crop': {e}") from None
        return cls(
            name=str(obj.get("name") or path.stem) if row is None else f"{path.stem}_{row:05d}",
            w_plus=w.contiguous(),
            noise=[t.float() for t in noise] if noise is not None else None,
            image_path=str(image_path) if image_path else None,
            metrics=dict(metrics or {}),
            provenance=dict(prov) if isinstance(prov, Mapping) else {},
            refinement=dict(refinement) if isinstance(refinement, Mapping) else None,
            generator=str((path.parent / tuned).resolve()) if tuned else None,
            photo_crop=crop,
            source=str(path),
            extra={k: obj[k] for k in obj if k not in _RECORD_KEYS} if row is None else {},
        )

    @classmethod
    def load(cls, path: str | Path) -> CodeRecord:
        """Read one code file (weights-only).

        Raises:
            LsapFileError naming ``path``: missing, refused or unreadable, no ``w_plus`` tensor,
                malformed entries.
        """
        obj = read_code_file(path)
        if not isinstance(obj.get("w_plus"), Tensor):
            raise LsapFileError(path, "no 'w_plus' tensor: not an lsap-invert code file")
        return cls.from_dict({**obj, "w_plus": obj["w_plus"].float()}, path)


_RECORD_KEYS = (
    "w_plus",
    "noise",
    "image_path",
    "name",
    "metrics",
    "provenance",
    "refinement",
    "generator",
    "photo_crop",
)


def read_code_file(path: str | Path) -> dict[str, Any]:
    """The dict of a ``.pt`` code file, loaded weights-only on the CPU (entries unchecked; for
    readers that need only its provenance).

    Raises:
        LsapFileError naming ``path``: missing, refused or unreadable, not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise LsapFileError(path, "no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler and corrupt files raise many types
        raise LsapFileError(path, f"refused or unreadable ({type(e).__name__})") from None
    if not isinstance(obj, Mapping):
        raise LsapFileError(path, f"expected a dict, found {type(obj).__name__}")
    return dict(obj)


def _sha_of(obj: Mapping[str, Any]) -> str | None:
    prov = obj.get("provenance")
    if isinstance(prov, Mapping) and prov.get("generator_sha256"):
        return str(prov["generator_sha256"])
    return None


def generator_shas(G: Any) -> tuple[str, ...]:
    """The sha256s codes for ``G`` may record: its own, and its base's when G is a tuned
    generator (codes are the pivots it was tuned around)."""
    return tuple(s for s in (G.sha256, getattr(G, "base_sha256", None)) if s)


def generator_mismatch(recorded: str | None, sha256: str | Sequence[str] | None) -> str | None:
    """Why codes recorded for generator ``recorded`` do not fit the one with ``sha256`` (or any
    of several, see :func:`generator_shas`) (None: fine or unknown)."""
    accepted = (sha256,) if isinstance(sha256, str) else tuple(sha256 or ())
    if not recorded or not accepted or recorded in accepted:
        return None
    sha256 = accepted[0]
    return (
        f"codes were made for generator {recorded[:12]}, not this one ({sha256[:12]}); "
        "edits and metrics would be meaningless (strict=true makes this an error)"
    )


def check_generator(
    recorded: str | None,
    sha256: str | Sequence[str] | None,
    path: str | Path,
    *,
    strict: bool = False,
) -> None:
    """Codes recorded for another generator: a warning, or with ``strict`` an error naming the file."""
    problem = generator_mismatch(recorded, sha256)
    if problem and strict:
        raise LsapFileError(path, problem)
    if problem:
        warnings.warn(f"{path}: {problem}", stacklevel=2)


def merge_mismatches(parts: Sequence[Mapping[str, str]]) -> dict[str, Any] | None:
    """One record of ``{file: problem}`` maps (e.g. gathered from DDP ranks), or None if empty:
    ``{"problem": the first file's (sorted), "num_files": n, "first_file": path}``."""
    files = {f: p for part in parts for f, p in part.items()}
    if not files:
        return None
    first = sorted(files)[0]
    return {"problem": files[first], "num_files": len(files), "first_file": first}


class CodeSet:
    """Codes of an inversion, read lazily one at a time (bounded memory for large folders).

    ``path`` may be: an ``lsap-invert`` output folder (``codes/*.pt``); a folder of code files
    (``.pt``/``.pth``/``.npy``/``.npz``, one per image, or several codes each); one file holding an
    ``lsap-invert`` code dict; or one file of N codes ([N, w_dim] or [N, num_ws, w_dim], named
    ``<stem>_<row>``).

    Args:
        path: see above.
        num_ws, w_dim: the generator's sizes (codes are checked against them).
        sha256: the generator's sha256 (or the several it accepts, :func:`generator_shas`);
            codes recorded for another one warn, or raise with ``strict``.
    """

    def __init__(
        self,
        path: str | Path,
        num_ws: int,
        w_dim: int,
        *,
        sha256: str | Sequence[str] | None = None,
        strict: bool = False,
    ) -> None:
        self.path = Path(path)
        self.num_ws, self.w_dim, self.sha256, self.strict = num_ws, w_dim, sha256, strict
        self._rows: list[tuple[str, Path, int | None]] = []  # name, file, row (None: whole file)
        self._cache: tuple[Path, Any] | None = None
        self._mismatched: dict[str, str] = {}  # file -> why its codes do not fit (strict=False)
        if self.path.is_file():
            n = self._load(self.path)["w_plus"].shape[0]
            if n == 1:
                self._rows.append((self._name(self.path), self.path, None))
            else:
                self._rows.extend((f"{self.path.stem}_{i:05d}", self.path, i) for i in range(n))
        elif self.path.is_dir():
            # one code per file, named by the file (read lazily: files may hold noise maps)
            folder = self.path / CODES_DIR if (self.path / CODES_DIR).is_dir() else self.path
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CODE_SUFFIXES)
            if not files:
                raise LsapFileError(folder, f"holds no code files ({', '.join(CODE_SUFFIXES)})")
            self._rows = [(f.stem, f, None) for f in files]
            self[0]  # fail fast on a wrong shape or generator
        else:
            raise LsapFileError(self.path, "no such file or folder (codes)")

    def _name(self, path: Path) -> str:
        obj = self._load(path)
        return str(obj.get("name") or path.stem)

    def _load(self, path: Path) -> Any:
        if self._cache is not None and self._cache[0] == path:
            return self._cache[1]
        if path.suffix.lower() in (".pt", ".pth"):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise LsapFileError(path, f"refused or unreadable ({type(e).__name__})") from None
            if not (isinstance(obj, Mapping) and "w_plus" in obj):
                obj = {"w_plus": read_codes(path)}
        else:
            obj = {"w_plus": read_codes(path)}
        if not isinstance(obj["w_plus"], Tensor):
            raise LsapFileError(path, "'w_plus' is not a tensor")
        obj = dict(obj)
        obj["w_plus"] = check_codes(obj["w_plus"].float(), self.num_ws, self.w_dim, path)
        problem = generator_mismatch(_sha_of(obj), self.sha256)
        if problem and self.strict:
            raise LsapFileError(path, problem)
        if problem and not self._mismatched:  # warn once per set, not once per file
            warnings.warn(f"{path}: {problem}", stacklevel=3)
        if problem:
            self._mismatched.setdefault(str(path), problem)
        self._cache = (path, obj)
        return obj

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self._rows]

    def generator_mismatch(self) -> dict[str, Any] | None:
        """Codes read so far that were recorded for another generator (``strict=False`` lets
        them through with a warning), for the job's output files: ``{"problem": the first file's,
        "num_files": n, "first_file": path}``, or None when every file read fits."""
        return merge_mismatches([self._mismatched])

    @property
    def mismatched_files(self) -> dict[str, str]:
        """``{file: problem}`` of the files read so far whose codes are for another generator."""
        return dict(self._mismatched)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> CodeRecord:
        name, path, row = self._rows[index]
        obj = self._load(path)
        if row is None and obj["w_plus"].shape[0] != 1:
            raise LsapFileError(
                path, f"holds {obj['w_plus'].shape[0]} codes; a folder needs one code per file"
            )
        record = CodeRecord.from_dict(obj, path, row)
        record.name = name
        return record

    def has_tuned_generators(self) -> bool:
        """Whether the codes name tuned generators (judged by the first code, as a set is written
        by one run)."""
        return len(self) > 0 and self[0].generator is not None


def find_images(path: str | Path) -> dict[str, Path]:
    """Images of a result folder by ``<name>``: ``<path>/reconstructions/`` when present, else the
    folder itself (recursively, names relative to it).

    Raises:
        LsapFileError: no such folder, or no images in it.
    """
    path = Path(path)
    if not path.is_dir():
        raise LsapFileError(path, "no such folder (images)")
    root = path / RECONSTRUCTIONS_DIR if (path / RECONSTRUCTIONS_DIR).is_dir() else path
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LsapFileError(root, f"holds no images ({', '.join(IMAGE_SUFFIXES)})")
    out: dict[str, Path] = {}
    for f in files:
        name = image_name(f, root)
        if name in out:
            raise LsapFileError(f, f"two images are named {name!r} ({out[name].name}, {f.name})")
        out[name] = f
    return out


def has_codes(path: str | Path) -> bool:
    """Whether ``path`` holds codes (a code file, ``codes/``, or code files at its top level)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in CODE_SUFFIXES
    if (path / CODES_DIR).is_dir():
        return True
    return path.is_dir() and any(p.suffix.lower() in CODE_SUFFIXES for p in path.iterdir())


def recorded_generator(path: str | Path) -> tuple[dict[str, Any], str] | None:
    """The generator config and sha256 that the first code file of ``path`` (see
    :class:`CodeSet`) records in its provenance, when that config rebuilds the generator by
    itself: a file shipped in ``lsap/assets`` (``asset:...``) or a random generator given by its
    architecture and seed. None otherwise (a user's file, no record, not an lsap code file).

    Codes made with the toy models then open with the generator they were made for, without the
    user repeating ``generator=``.
    """
    path = Path(path)
    if path.is_dir():
        folder = path / CODES_DIR if (path / CODES_DIR).is_dir() else path
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".pt", ".pth"))
        path = files[0] if files else path
    if not path.is_file() or path.suffix.lower() not in (".pt", ".pth"):
        return None
    try:
        obj = read_code_file(path)
    except LsapFileError:
        return None  # CodeSet reports the file in one line
    prov = obj.get("provenance")
    if not isinstance(prov, Mapping) or not prov.get("generator_sha256"):
        return None
    config = prov.get("config")
    gen = config.get("generator") if isinstance(config, Mapping) else None
    if not isinstance(gen, Mapping):
        return None
    file = gen.get("path")
    shipped = isinstance(file, str) and file.startswith("asset:") and not gen.get("base")
    random = not file and isinstance(gen.get("arch"), Mapping)
    if not (shipped or random):
        return None
    return dict(gen), str(prov["generator_sha256"])
