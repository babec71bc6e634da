"""Attribute labels of an image folder: ``labels.csv`` (one row per image, one column per attribute).

The file, as ``lsap.data.toy.write_toy_images`` writes it::

    file,smile,glasses,skin_tone
    toy_0_000000.png,1,0,0.42
    sub/photo.jpg,0,1,0.9

The first column names the image (its header is one of :data:`NAME_COLUMNS`): a path relative to
the image folder, with or without its suffix; it becomes the lsap ``<name>`` of the image
(``sub/photo.jpg`` -> ``sub__photo``, as ``lsap-invert`` names its code files). Every further
column is one attribute: numbers, binary (all values 0 or 1) or scalar (anything else); a kind
can be forced per attribute.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor

from lsap.core.errors import LsapFileError
from lsap.data.images import IMAGE_SUFFIXES

LABEL_KINDS = ("binary", "scalar")
NAME_COLUMNS = ("name", "file", "image", "filename", "path")


@dataclass(frozen=True)
class LabelTable:
    """The labels of a ``labels.csv``.

    Attributes:
        path: the file read.
        names: [N] lsap image names (see the module docstring), in file order.
        files: [N] the first column as written.
        attributes: [A] attribute names (the columns read, in the order asked for).
        kinds: [A] "binary" | "scalar".
        values: float64 [N, A]; binary columns hold 0/1.
    """

    path: Path
    names: list[str]
    files: list[str]
    attributes: list[str]
    kinds: list[str]
    values: Tensor

    def column(self, attribute: str) -> Tensor:
        """float64 [N]: the values of one attribute."""
        return self.values[:, self.attributes.index(attribute)]

    def select(self, rows: Sequence[int]) -> LabelTable:
        """The table of the given rows only."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        return LabelTable(
            self.path,
            [self.names[i] for i in rows],
            [self.files[i] for i in rows],
            self.attributes,
            self.kinds,
            self.values[idx],
        )


def label_name(entry: str) -> str:
    """The lsap ``<name>`` of a labels.csv entry: ``sub/photo.jpg`` -> ``sub__photo``."""
    p = PurePosixPath(entry.strip().replace("\\", "/"))
    if p.suffix.lower() in IMAGE_SUFFIXES:
        p = p.with_suffix("")
    return "__".join(part for part in p.parts if part not in ("", "."))


def infer_kind(values: Tensor) -> str:
    """``binary`` when every value is 0 or 1, else ``scalar``."""
    return "binary" if bool(((values == 0) | (values == 1)).all()) else "scalar"


def read_labels_csv(
    path: str | Path,
    attributes: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> LabelTable:
    """Read a ``labels.csv`` (see the module docstring).

    Args:
        path: the file.
        attributes: columns to read (None = every column after the first).
        kinds: ``{attribute: "binary" | "scalar"}`` overriding the inferred kind.

    Raises:
        LsapFileError naming ``path`` (one line): a missing or empty file, a first column that
        does not name images, a missing attribute column, a row of another length, an empty,
        non-numeric or non-finite value, a name twice, binary values other than 0/1 for an
        attribute forced binary.
    """
    path = Path(path)
    if not path.is_file():
        raise LsapFileError(
            path, "no such file (labels.csv: a name column and one column per attribute)"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LsapFileError(path, f"not a readable CSV file ({type(e).__name__}: {e})") from None
    if len(rows) < 2:
        raise LsapFileError(path, "needs a header row and at least one row of labels")
    header = [c.strip() for c in rows[0]]
    if header[0].lower() not in NAME_COLUMNS:
        raise LsapFileError(
            path,
            f"the first column must name the images (header one of {', '.join(NAME_COLUMNS)}), "
            f"got {header[0]!r}",
        )
    columns = header[1:]
    if not columns:
        raise LsapFileError(path, "has no attribute columns after the name column")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise LsapFileError(path, f"column {dupes[0]!r} appears twice")
    wanted = list(columns if attributes is None else attributes)
    missing = [a for a in wanted if a not in columns]
    if missing:
        raise LsapFileError(
            path, f"has no column {missing[0]!r} (its columns: {', '.join(columns)})"
        )
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(wanted))
    if unknown:
        raise ValueError(f"labels.kinds names {unknown[0]!r}, not an attribute read from {path}")
    idx = [header.index(a) for a in wanted]
    names, files, values, seen = [], [], [], {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise LsapFileError(
                path, f"line {line} has {len(row)} fields, the header {len(header)}"
            )
        entry = row[0].strip()
        name = label_name(entry)
        if not name:
            raise LsapFileError(path, f"line {line} has an empty image name")
        if name in seen:
            raise LsapFileError(
                path, f"line {line} names image {name!r} again (first on line {seen[name]})"
            )
        seen[name] = line
        vals = []
        for j, a in zip(idx, wanted, strict=True):
            text = row[j].strip()
            try:
                v = float(text)
            except ValueError:
                raise LsapFileError(
                    path, f"line {line}, column {a!r}: {text!r} is not a number"
                ) from None
            if v != v or v in (float("inf"), float("-inf")):
                raise LsapFileError(path, f"line {line}, column {a!r}: {text!r} is not finite")
            vals.append(v)
        names.append(name)
        files.append(entry)
        values.append(vals)
    table = torch.tensor(values, dtype=torch.float64).reshape(len(values), len(wanted))
    out_kinds = []
    for k, a in enumerate(wanted):
        kind = kinds.get(a) or infer_kind(table[:, k])
        if kind not in LABEL_KINDS:
            raise ValueError(f"labels.kinds.{a} must be one of {LABEL_KINDS}, got {kind!r}")
        if kind == "binary" and infer_kind(table[:, k]) != "binary":
            raise LsapFileError(path, f"column {a!r} is binary but holds values other than 0 and 1")
        out_kinds.append(kind)
    return LabelTable(path, names, files, wanted, out_kinds, table)
