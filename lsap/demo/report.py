"""The demo's report: one self-contained HTML page (images embedded as base64 PNGs) and a JSON of
every number.

Tables: per method SNCD / MSE / PSNR / SSIM / LPIPS / ID / FID and time (means per domain), the
editability summary (means over edits and non-zero factors), and per edit the scores of every
method and factor; images: originals beside every method's reconstruction, and one grid per edit
(rows: image x method, columns: factors).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lsap.data.images import tensor_to_uint8

# (key, header, better) of the inversion table; better: "low" / "high"
INVERSION_COLUMNS = (
    ("sncd", "SNCD", "low"),
    ("mse", "MSE", "low"),
    ("psnr", "PSNR (dB)", "high"),
    ("ssim", "SSIM", "high"),
    ("lpips", "LPIPS", "low"),
    ("id", "ID", "high"),
)
EDIT_COLUMNS = (
    ("target_shift", "target shift", "high"),
    ("target_success", "target success", "high"),
    ("others_abs_delta", "others |Δ|", "low"),
    ("others_flip_rate", "others flipped", "low"),
    ("fid", "FID edited", "low"),
    ("lpips", "LPIPS to unedited", "low"),
    ("id", "ID to original", "high"),
    ("sncd", "SNCD edited", "low"),
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; } td.name, th.name { text-align: left; }
td.best { font-weight: bold; background: #eaf6ea; }
img.cell { image-rendering: pixelated; display: block; }
img.grid { image-rendering: pixelated; max-width: 100%; }
.note { color: #8a4b00; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""


def json_safe(obj: Any) -> Any:
    """A copy with non-finite floats as None (strict JSON) and tensors as lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Tensor):
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def png_bytes(image: Tensor, size: int | None = None) -> bytes:
    """[3, H, W] in [-1, 1] -> PNG bytes; ``size``: upscale (nearest) or downscale (area) to it."""
    x = image.detach().float().cpu()[None]
    if size is not None and x.shape[-1] != size:
        mode = "area" if x.shape[-1] > size else "nearest"
        x = F.interpolate(x, size=(size, size), mode=mode)
    arr = tensor_to_uint8(x[0]).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any, key: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        if key == "psnr":
            return f"{v:.2f}"
        if key in ("fid",) or abs(v) >= 100:
            return f"{v:.2f}"
        return f"{v:.4f}"
    return html.escape(str(v))


def _best(values: Sequence[Any], better: str) -> Any:
    finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return min(finite) if better == "low" else max(finite)


def _table(
    table_id: str,
    headers: Sequence[str],
    rows: Sequence[tuple[str, Sequence[Any]]],
    columns: Sequence[tuple[str, str, str]],
) -> str:
    """A table whose first column is the row name and whose best value per column is marked."""
    best = [_best([r[1][j] for r in rows], c[2]) for j, c in enumerate(columns)]
    out = [f'<table id="{table_id}"><tr>']
    out += [f'<th class="name">{html.escape(headers[0])}</th>']
    out += [f"<th>{html.escape(h)}</th>" for h in headers[1:]]
    out.append("</tr>")
    for name, values in rows:
        out.append(f'<tr data-row="{html.escape(name)}"><td class="name">{html.escape(name)}</td>')
        for j, v in enumerate(values):
            cls = ' class="best"' if best[j] is not None and v == best[j] else ""
            out.append(f"<td{cls}>{_fmt(v, columns[j][0])}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def inversion_table(methods: Mapping[str, Mapping[str, Any]], group: str) -> str:
    """Means of one image group (``all``, ``toy``, ``photo``) per method, with FID and time."""
    cols = [
        c
        for c in INVERSION_COLUMNS
        if any(c[0] in m["mean"].get(group, {}) for m in methods.values())
    ]
    has_fid = any(group in m["fid"] for m in methods.values())
    columns = [*cols, *([("fid", "FID", "low")] if has_fid else []), ("time", "s / image", "low")]
    headers = ["method", *[f"{h} {'↓' if b == 'low' else '↑'}" for _, h, b in columns]]
    rows = []
    for name, m in methods.items():
        mean = m["mean"].get(group, {})
        values = [mean.get(k) for k, _, _ in cols]
        if has_fid:
            values.append(m["fid"].get(group))
        values.append(m["seconds_per_image"])
        rows.append((name, values))
    return _table(f"inversion-{group}", headers, rows, columns)


def editability_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    columns = [c for c in EDIT_COLUMNS if any(c[0] in s for s in summary.values())]
    headers = ["method", *[f"{h} {'↓' if b == 'low' else '↑'}" for _, h, b in columns]]
    rows = [(name, [s.get(k) for k, _, _ in columns]) for name, s in summary.items()]
    return _table("editability", headers, rows, columns)


def edit_table(edit: str, entry: Mapping[str, Any]) -> str:
    """Rows: method @ factor; columns: the editing scores present."""
    per = entry["methods"]
    keys = {k for m in per.values() for s in m.values() for k in s if k != "attribute_change"}
    columns = [c for c in EDIT_COLUMNS if c[0] in keys]
    headers = ["method @ factor", *[f"{h} {'↓' if b == 'low' else '↑'}" for _, h, b in columns]]
    rows = []
    for method, factors in per.items():
        for fk, s in factors.items():
            rows.append((f"{method} @ {fk}", [s.get(k) for k, _, _ in columns]))
    safe = "".join(ch if ch.isalnum() else "-" for ch in edit)
    return _table(f"edit-{safe}", headers, rows, columns)


def reconstruction_table(
    names: Sequence[str],
    originals: Tensor,
    reconstructions: Mapping[str, Tensor],
    cell: int,
) -> str:
    """One row per image: its name, the original and every method's reconstruction."""
    size = min(cell, originals.shape[-1])
    out = ['<table id="reconstructions"><tr><th class="name">image</th><th>original</th>']
    out += [f"<th>{html.escape(m)}</th>" for m in reconstructions]
    out.append("</tr>")
    for i, name in enumerate(names):
        out.append(f'<tr data-row="{html.escape(name)}"><td class="name">{html.escape(name)}</td>')
        for img in [originals[i], *(r[i] for r in reconstructions.values())]:
            uri = data_uri(png_bytes(img, size))
            out.append(f'<td><img class="cell" width="{cell}" height="{cell}" src="{uri}"></td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def edit_grid(rows: Sequence[tuple[str, Tensor]], cell: int) -> Tensor:
    """Grid [3, H, W] of edit rows: each ``(label, images [F, 3, R, R])`` becomes one row of F
    cells (nearest-neighbour upscaling of small images)."""
    from lsap.data.grid import image_grid

    size = cell
    cells = []
    for _, images in rows:
        x = images.detach().float().cpu()
        mode = "area" if x.shape[-1] > size else "nearest"
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode=mode)
        cells.append(list(x))
    return image_grid(cells, pad=2)


def render_html(
    results: Mapping[str, Any],
    *,
    names: Sequence[str],
    originals: Tensor,
    reconstructions: Mapping[str, Tensor],
    grids: Mapping[str, tuple[Tensor, Sequence[str]]],
    cell: int = 96,
) -> str:
    """The report page.

    Args:
        results: the numbers (as written to the JSON).
        names, originals: the input images [N, 3, R, R].
        reconstructions: method -> [N, 3, R, R].
        grids: edit -> (grid [3, H, W], row labels).
        cell: displayed size of every image in pixels.
    """
    methods = results["methods"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lsap demo</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>LSAP demo: inversion, alignment (SNCD) and editing</h1>",
        f"<p>{html.escape(results.get('summary', ''))}</p>",
    ]
    if results.get("notes"):
        parts.append("<h2>Caveats</h2><ul>")
        parts += [f'<li class="note">{html.escape(n)}</li>' for n in results["notes"]]
        parts.append("</ul>")
    parts.append("<h2>Inversion</h2>")
    groups = [g for g in ("toy", "photo", "all") if any(g in m["mean"] for m in methods.values())]
    labels = {
        "toy": "held-out toy faces (in domain)",
        "photo": "photos (out of domain for the toy generator)",
        "all": "all images",
    }
    for g in groups:
        if g == "all" and len(groups) == 2:  # one domain only: "all" repeats it
            continue
        parts.append(f"<h3>{html.escape(labels[g])}</h3>")
        parts.append(inversion_table(methods, g))
    parts.append("<h3>Reconstructions</h3>")
    parts.append(reconstruction_table(names, originals, reconstructions, cell))
    if results.get("editability"):
        parts.append("<h2>Editing</h2>")
        parts.append(
            "<p>Means over every edit and non-zero factor, on the toy faces, between the "
            "unedited reconstruction and the edited image as the attribute classifier reads "
            "them. Target shift: change of the edited attribute towards the edit's side; "
            "target success: share of faces that cross to that side; others |Δ| / flipped: "
            "change of every other attribute (lower = more stable). See Definitions.</p>"
        )
        parts.append(editability_table(results["editability"]))
    for edit, entry in (results.get("edits") or {}).items():
        parts.append(f"<h3>{html.escape(edit)}</h3>")
        if entry.get("target"):
            parts.append(f"<p>target attribute: {html.escape(entry['target'])}</p>")
        parts.append(edit_table(edit, entry))
        if edit in grids:
            grid, row_labels = grids[edit]
            factors = ", ".join(f"{f:+g}" for f in entry["factors"])
            parts.append(
                f"<p>rows: {html.escape('; '.join(row_labels))}. Columns: factors {factors}.</p>"
            )
            parts.append(f'<img class="grid" src="{data_uri(png_bytes(grid))}">')
    if results.get("definitions"):
        parts.append("<h2>Definitions</h2><ul>")
        parts += [
            f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>"
            for k, v in results["definitions"].items()
        ]
        parts.append("</ul>")
    parts.append("<h2>Provenance</h2><pre>")
    parts.append(html.escape(json.dumps(json_safe(results.get("provenance", {})), indent=2)))
    parts.append("</pre></body></html>")
    return "\n".join(parts)


def stack_edit_rows(
    edited: Mapping[tuple[str, str], Tensor],
    edit: str,
    methods: Sequence[str],
    image_indices: Sequence[int],
    names: Sequence[str],
) -> list[tuple[str, Tensor]]:
    """Rows of one edit's grid: for each chosen image, one row per method (images [F, 3, R, R])."""
    rows = []
    for i in image_indices:
        for m in methods:
            rows.append((f"{names[i]} / {m}", edited[(m, edit)][i]))
    return rows


__all__ = [
    "edit_grid",
    "json_safe",
    "png_bytes",
    "render_html",
    "stack_edit_rows",
]
