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

import numpy as np
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


def _fit(h: int, w: int, longest: int) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is ``longest``."""
    return max(1, round(h * longest / max(h, w))), max(1, round(w * longest / max(h, w)))


def _cell_size(image: Tensor, cell: int) -> str:
    """``width=... height=...`` of an image shown with its longer side ``cell`` px."""
    h, w = _fit(int(image.shape[-2]), int(image.shape[-1]), cell)
    return f'width="{w}" height="{h}"'


def png_bytes(image: Tensor, size: int | None = None) -> bytes:
    """[3, H, W] in [-1, 1] -> PNG bytes; ``size``: upscale (nearest) or downscale (area) so the
    longer side is ``size`` (aspect kept: a non-square generator's valid region stays so)."""
    x = image.detach().float().cpu()[None]
    if size is not None and max(x.shape[-2:]) != size:
        mode = "area" if max(x.shape[-2:]) > size else "nearest"
        x = F.interpolate(x, size=_fit(x.shape[-2], x.shape[-1], size), mode=mode)
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
    ranked: Sequence[bool] | None = None,
) -> str:
    """A table whose first column is the row name and whose best value per column is marked
    among the ``ranked`` rows (all by default; e.g. not the factor-0 rows of an edit, which are
    trivially 0)."""
    ranked = [True] * len(rows) if ranked is None else list(ranked)
    contenders = [r for r, k in zip(rows, ranked, strict=True) if k]
    best = [_best([r[1][j] for r in contenders], c[2]) for j, c in enumerate(columns)]
    out = [f'<table id="{table_id}"><tr>']
    out += [f'<th class="name">{html.escape(headers[0])}</th>']
    out += [f"<th>{html.escape(h)}</th>" for h in headers[1:]]
    out.append("</tr>")
    for (name, values), rank in zip(rows, ranked, strict=True):
        out.append(f'<tr data-row="{html.escape(name)}"><td class="name">{html.escape(name)}</td>')
        for j, v in enumerate(values):
            cls = ' class="best"' if rank and best[j] is not None and v == best[j] else ""
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
    rows, ranked = [], []
    for method, factors in per.items():
        for fk, s in factors.items():
            rows.append((f"{method} @ {fk}", [s.get(k) for k, _, _ in columns]))
            ranked.append(float(fk) != 0.0)  # factor 0 changes nothing: not a contender
    safe = "".join(ch if ch.isalnum() else "-" for ch in edit)
    return _table(f"edit-{safe}", headers, rows, columns, ranked)


def reconstruction_table(
    names: Sequence[str],
    originals: Tensor,
    reconstructions: Mapping[str, Tensor],
    cell: int,
) -> str:
    """One row per image: its name, the original and every method's reconstruction."""
    size = min(cell, max(originals.shape[-2:]))
    out = ['<table id="reconstructions"><tr><th class="name">image</th><th>original</th>']
    out += [f"<th>{html.escape(m)}</th>" for m in reconstructions]
    out.append("</tr>")
    for i, name in enumerate(names):
        out.append(f'<tr data-row="{html.escape(name)}"><td class="name">{html.escape(name)}</td>')
        for img in [originals[i], *(r[i] for r in reconstructions.values())]:
            uri = data_uri(png_bytes(img, size))
            out.append(f'<td><img class="cell" {_cell_size(img, cell)} src="{uri}"></td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def photo_png(arr: np.ndarray, size: int) -> bytes:
    """[H, W, 3] uint8 -> PNG bytes, the longer side shrunk (Lanczos) to at most ``size``."""
    img = Image.fromarray(arr, "RGB")
    scale = size / max(img.size)
    if scale < 1:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pasted_table(pasted: Mapping[str, Mapping[str, np.ndarray]], size: int) -> str:
    """One row per face-aligned photo: the photo and every method's reconstruction pasted back
    into it (``{name: {"photo": [H, W, 3] uint8, method: [H, W, 3] uint8}}``), at most ``size``
    pixels on the longer side."""
    methods = list(dict.fromkeys(m for p in pasted.values() for m in p if m != "photo"))
    out = ['<table id="pasted"><tr><th class="name">image</th><th>photo</th>']
    out += [f"<th>{html.escape(m)}</th>" for m in methods]
    out.append("</tr>")
    for name, row in pasted.items():
        out.append(f'<tr data-row="{html.escape(name)}"><td class="name">{html.escape(name)}</td>')
        for key in ("photo", *methods):
            if key not in row:
                out.append("<td></td>")
                continue
            uri = data_uri(photo_png(row[key], size))
            out.append(f'<td><img class="photo" src="{uri}"></td>')
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
        mode = "area" if max(x.shape[-2:]) > size else "nearest"
        if max(x.shape[-2:]) != size:  # longer side -> size, aspect kept
            x = F.interpolate(x, size=_fit(x.shape[-2], x.shape[-1], size), mode=mode)
        cells.append(list(x))
    return image_grid(cells, pad=2)


PAIRS = (("projector", "lsap_o"), ("e4e", "lsap_e"))  # (without, with) the SNCD term
GROUP_LABELS = {
    "toy": "held-out toy images (in domain)",
    "photo": "photos (out of domain for the toy generator)",
    "all": "all images",
}


def main_group(methods: Mapping[str, Mapping[str, Any]]) -> str:
    """The image group the overview and the plot speak about: the toy faces when there are any
    (in domain, with classifier-read edits), else all images."""
    return "toy" if any("toy" in m["mean"] for m in methods.values()) else "all"


def edit_success_key(editability: Mapping[str, Mapping[str, float]]) -> str | None:
    """The editability measure of edit success present: target success, else target shift."""
    for key in ("target_success", "target_shift"):
        if any(key in s for s in editability.values()):
            return key
    return None


def _num(m: Mapping[str, Any], group: str, key: str) -> float | None:
    v = m["mean"].get(group, {}).get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def overview(results: Mapping[str, Any]) -> list[str]:
    """A few sentences for a newcomer, written from the numbers: which method aligns best (SNCD,
    against the generator's own samples), which reconstructs best, what the SNCD term changed,
    which edits best, and what to run next."""
    methods: Mapping[str, Mapping[str, Any]] = results["methods"]
    group = main_group(methods)
    where = GROUP_LABELS[group]
    out = []
    sncd = {n: v for n in methods if (v := _num(methods[n], group, "sncd")) is not None}
    samples = results.get("generator", {}).get("samples_expected_sncd")
    if sncd:
        lo, hi = min(sncd, key=sncd.get), max(sncd, key=sncd.get)
        text = f"Alignment on the {where}: {lo} gives the lowest SNCD ({sncd[lo]:.3f})"
        text += f", {hi} the highest ({sncd[hi]:.3f})" if hi != lo else ""
        if isinstance(samples, int | float):
            text += (
                f"; the generator's own samples average {samples:.3f}, so codes near that value "
                "lie where the generator's codes lie"
            )
        out.append(text + ".")
    psnr = {n: v for n in methods if (v := _num(methods[n], group, "psnr")) is not None}
    if psnr:
        best = max(psnr, key=psnr.get)
        rest = ", ".join(f"{n} {psnr[n]:.2f} dB" for n in psnr if n != best)
        out.append(
            f"Reconstruction: {best} is closest to the originals (PSNR {psnr[best]:.2f} dB)"
            + (f"; {rest}." if rest else ".")
        )
    editability = results.get("editability") or {}
    key = edit_success_key(editability)
    success = {n: float(s[key]) for n, s in editability.items() if key and key in s}
    for without, with_term in PAIRS:
        if without in sncd and with_term in sncd:
            text = (
                f"The SNCD term ({with_term} against {without}) moved SNCD "
                f"{sncd[without]:.3f} -> {sncd[with_term]:.3f}"
            )
            if without in psnr and with_term in psnr:
                text += f" and PSNR {psnr[without]:.2f} -> {psnr[with_term]:.2f} dB"
            if without in success and with_term in success:
                text += f" and {key.replace('_', ' ')} {success[without]:.2f} -> "
                text += f"{success[with_term]:.2f}"
            out.append(text + ".")
    if success:
        best = max(success, key=success.get)
        worst = min(success, key=success.get)
        text = f"Editing (read by the attribute classifier): {best} edits best "
        text += f"({key.replace('_', ' ')} {success[best]:.2f})"
        text += f", {worst} worst ({success[worst]:.2f})" if worst != best else ""
        out.append(text + ".")
    if results.get("notes"):
        out.append(
            "Some measures here are stand-ins or missing (see Caveats): compare methods with "
            "them, not with published numbers."
        )
    out.append(
        "Next: your own images with `lsap-demo data.path=<folder>` (add data.align=true for "
        "face photos), real faces with `generator=ffhq` and encoder files, one step at a time "
        "with lsap-invert, lsap-edit and lsap-eval (docs/commands/)."
    )
    return out


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def scatter_svg(
    points: Mapping[str, tuple[float, float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    vline: tuple[float, str] | None = None,
    clouds: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    width: int = 360,
    height: int = 260,
) -> str:
    """A small inline SVG scatter plot: one labelled point per name (and its faint per-image
    ``clouds``), an optional dashed vertical line ``(x, label)``. Plain SVG: no plotting
    library needed."""
    clouds = clouds or {}
    xs = [p[0] for p in points.values()] + [p[0] for c in clouds.values() for p in c]
    ys = [p[1] for p in points.values()] + [p[1] for c in clouds.values() for p in c]
    if vline is not None:
        xs.append(vline[0])
    if not xs:
        return ""
    x0, x1 = min(0.0, min(xs)), max(xs)
    y0, y1 = min(ys), max(ys)
    x1 = x1 if x1 > x0 else x0 + 1.0
    pad_y = (y1 - y0) * 0.1 or max(abs(y1) * 0.1, 0.05)
    y0, y1 = y0 - pad_y, y1 + pad_y
    left, right, top, bottom = 56, 16, 28, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    e = html.escape
    out = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" font-size="11" font-family="sans-serif">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="bold">{e(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{e(xlabel)}</text>',
        f'<text transform="translate(12,{top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{e(ylabel)}</text>',
    ]
    for v, anchor, x in ((x0, "start", left), (x1, "end", left + pw)):
        out.append(f'<text x="{x}" y="{top + ph + 13}" text-anchor="{anchor}">{v:.3g}</text>')
    for v, y in ((y0, top + ph), (y1, top + 9)):
        out.append(f'<text x="{left - 4}" y="{y}" text-anchor="end">{v:.3g}</text>')
    if vline is not None:
        x = sx(vline[0])
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#555" '
            'stroke-dasharray="4 3"/>'
        )
        out.append(f'<text x="{x + 3:.1f}" y="{top + 11}" fill="#555">{e(vline[1])}</text>')
    names = list(dict.fromkeys([*clouds, *points]))
    for k, name in enumerate(names):
        color = PALETTE[k % len(PALETTE)]
        for x, y in clouds.get(name, ()):
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}" '
                'fill-opacity="0.35"/>'
            )
        if name in points:
            x, y = points[name]
            out.append(
                f'<circle class="method" data-method="{e(name)}" cx="{sx(x):.1f}" '
                f'cy="{sy(y):.1f}" r="5" fill="{color}"/>'
            )
            out.append(
                f'<text x="{sx(x) + 7:.1f}" y="{sy(y) + 4:.1f}" fill="{color}">{e(name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def sncd_plots(results: Mapping[str, Any]) -> str:
    """Per method: mean SNCD against fidelity (PSNR; per-image points faint) and against edit
    success (the classifier's reading), the generator samples' SNCD as a dashed line."""
    methods: Mapping[str, Mapping[str, Any]] = results["methods"]
    group = main_group(methods)
    samples = results.get("generator", {}).get("samples_expected_sncd")
    vline = (float(samples), "generator samples") if isinstance(samples, int | float) else None
    toy = {i["name"] for i in results.get("images", []) if i.get("domain") == "toy"}
    fidelity, clouds = {}, {}
    for n, m in methods.items():
        x, y = _num(m, group, "sncd"), _num(m, group, "psnr")
        if x is not None and y is not None:
            fidelity[n] = (x, y)
        clouds[n] = [
            (float(s["sncd"]), float(s["psnr"]))
            for name, s in m.get("per_image", {}).items()
            if (group != "toy" or name in toy)
            and all(isinstance(s.get(k), int | float) for k in ("sncd", "psnr"))
            and all(math.isfinite(float(s[k])) for k in ("sncd", "psnr"))
        ]
    where = GROUP_LABELS[group]
    parts = []
    if fidelity:
        parts.append(
            scatter_svg(
                fidelity,
                clouds=clouds,
                xlabel="SNCD (lower = closer to the generator's codes)",
                ylabel="PSNR (dB), higher = more faithful",
                title=f"SNCD against fidelity, {where}",
                vline=vline,
            )
        )
    editability = results.get("editability") or {}
    key = edit_success_key(editability)
    if key:
        success = {
            n: (x, float(editability[n][key]))
            for n in methods
            if n in editability
            and key in editability[n]
            and (x := _num(methods[n], group, "sncd")) is not None
        }
        if success:
            parts.append(
                scatter_svg(
                    success,
                    xlabel="SNCD (lower = closer to the generator's codes)",
                    ylabel=f"{key.replace('_', ' ')} (classifier), higher = better",
                    title="SNCD against edit success",
                    vline=vline,
                )
            )
    return "".join(parts)


def labelled_grid(
    table_id: str, rows: Sequence[tuple[str, Tensor]], factors: Sequence[float], cell: int
) -> str:
    """An edit grid as a table: one row per ``(label, images [F, 3, R, R])`` with its label, one
    column per factor with the factor as header."""
    e = html.escape
    out = [f'<table class="grid" id="{e(table_id)}"><tr><th class="name">image / method</th>']
    out += [f"<th>factor {f:+g}</th>" for f in factors]
    out.append("</tr>")
    for label, images in rows:
        out.append(f'<tr><td class="name">{e(label)}</td>')
        for img in images:
            uri = data_uri(png_bytes(img, min(cell, max(img.shape[-2:]))))
            out.append(f'<td><img class="cell" {_cell_size(img, cell)} src="{uri}"></td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(
    results: Mapping[str, Any],
    *,
    names: Sequence[str],
    originals: Tensor,
    reconstructions: Mapping[str, Tensor],
    grids: Mapping[str, Sequence[tuple[str, Tensor]]],
    cell: int = 96,
    pasted: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> str:
    """The report page.

    Args:
        results: the numbers (as written to the JSON).
        names, originals: the input images [N, 3, R, R].
        reconstructions: method -> [N, 3, R, R].
        grids: edit -> its grid's rows: (label "image / method", images [F, 3, R, R]).
        cell: displayed size of every image in pixels.
        pasted: face-aligned photos with each method's reconstruction pasted back
            (:func:`pasted_table`), shown at 3 x ``cell`` pixels; None or empty = no section.
    """
    methods = results["methods"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>lsap demo</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>LSAP demo: inversion, alignment (SNCD) and editing</h1>",
        f"<p>{html.escape(results.get('summary', ''))}</p>",
        '<h2>Overview</h2><ul id="overview">',
        *[f"<li>{html.escape(line)}</li>" for line in results.get("overview") or overview(results)],
        "</ul>",
        f'<div id="sncd-plots">{sncd_plots(results)}</div>',
    ]
    if results.get("notes"):
        parts.append("<h2>Caveats</h2><ul>")
        parts += [f'<li class="note">{html.escape(n)}</li>' for n in results["notes"]]
        parts.append("</ul>")
    parts.append("<h2>Inversion</h2>")
    groups = [g for g in ("toy", "photo", "all") if any(g in m["mean"] for m in methods.values())]
    labels = GROUP_LABELS
    for g in groups:
        if g == "all" and len(groups) == 2:  # one domain only: "all" repeats it
            continue
        parts.append(f"<h3>{html.escape(labels[g])}</h3>")
        parts.append(inversion_table(methods, g))
    parts.append("<h3>Reconstructions</h3>")
    parts.append(reconstruction_table(names, originals, reconstructions, cell))
    if pasted:
        parts.append("<h3>Pasted back into the photo</h3>")
        parts.append(
            "<p>Face-aligned photos: each method's reconstruction mapped through the inverse of "
            "the alignment and blended in under a feathered mask (pixels outside it are the "
            "photo's).</p>"
        )
        parts.append(pasted_table(pasted, 3 * cell))
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
            safe = "".join(ch if ch.isalnum() else "-" for ch in edit)
            parts.append(labelled_grid(f"grid-{safe}", grids[edit], entry["factors"], cell))
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
    "labelled_grid",
    "overview",
    "pasted_table",
    "photo_png",
    "png_bytes",
    "render_html",
    "sncd_plots",
    "stack_edit_rows",
]
