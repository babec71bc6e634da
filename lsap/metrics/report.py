"""Tables of an evaluation: Markdown for people, flat keys for loggers.

``results`` is the JSON ``lsap-eval`` writes: ``{"methods": {name: {"source", "num_images",
"metrics": {...}, "sncd": {"total", "mean", "per_layer"} | None, "editing": {edit: {factor:
{fid, id, lpips, sncd}}}}}, "edits": [...], ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# column, header, direction (for the reader), format
FIDELITY_COLUMNS = (
    ("mse", "MSE ↓", ".4f"),
    ("psnr", "PSNR ↑", ".2f"),
    ("ssim", "SSIM ↑", ".4f"),
    ("lpips", "LPIPS ↓", ".4f"),
    ("id", "ID ↑", ".4f"),
    ("fid", "FID ↓", ".2f"),
)
EDIT_COLUMNS = (
    ("fid", "FID ↓", ".2f"),
    ("id", "ID ↑", ".4f"),
    ("lpips", "LPIPS", ".4f"),
    ("sncd", "SNCD ↓", ".4f"),
)


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown_report(results: Mapping[str, Any], *, title: str = "Evaluation") -> str:
    """Fidelity/SNCD table (rows = methods), SNCD per layer, and one editing table per metric
    (rows = edit and factor, columns = methods)."""
    methods: Mapping[str, Any] = results["methods"]
    names = list(methods)
    present = [c for c in FIDELITY_COLUMNS if any(c[0] in m["metrics"] for m in methods.values())]
    out = [f"# {title}", ""]
    for n in names:
        bad = methods[n].get("generator_mismatch")
        if bad:
            out += [
                f"**Warning: the codes of {n} were made for another generator** "
                f"({bad['num_files']} file(s), e.g. {bad['first_file']}: {bad['problem']}).",
                "",
            ]
    header = ["method", "images", *[h for _, h, _ in present], "SNCD ↓ (sum)", "SNCD (layer mean)"]
    rows = []
    for n in names:
        m = methods[n]
        s = m.get("sncd") or {}
        rows.append(
            [n, str(m.get("num_images", "–"))]
            + [_fmt(m["metrics"].get(k), f) for k, _, f in present]
            + [_fmt(s.get("total"), ".4f"), _fmt(s.get("mean"), ".4f")]
        )
    out += _table(header, rows)
    with_sncd = [n for n in names if methods[n].get("sncd")]
    if with_sncd:
        L = len(methods[with_sncd[0]]["sncd"]["per_layer"])
        out += ["", "SNCD per w+ layer (mean over images):", ""]
        out += _table(
            ["method", *[str(i) for i in range(L)]],
            [[n, *[_fmt(x, ".4f") for x in methods[n]["sncd"]["per_layer"]]] for n in with_sncd],
        )
    edited = [n for n in names if methods[n].get("editing")]
    if edited:
        edits = methods[edited[0]]["editing"]
        for key, header_name, spec in EDIT_COLUMNS:
            if not any(key in v for e in edits.values() for v in e.values()):
                continue
            out += ["", f"Editing: {header_name} per edit and factor:", ""]
            rows = []
            for e, by_factor in edits.items():
                for fk in by_factor:
                    rows.append(
                        [e, fk]
                        + [
                            _fmt(methods[n]["editing"].get(e, {}).get(fk, {}).get(key), spec)
                            for n in edited
                        ]
                    )
            out += _table(["edit", "factor", *edited], rows)
    if results.get("two_stage"):
        out += ["", *two_stage_table(results)]
    definitions = results.get("definitions")
    if definitions:
        out += [""] + [f"- {k}: {v}" for k, v in definitions.items()]
    return "\n".join(out) + "\n"


def flat_metrics(results: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """``{"eval/<method>/metric/lpips": x, "eval/<method>/metric/sncd": x,
    "eval/<method>/edit/<edit>/<factor>/fid": x, ...}`` for loggers (NaN entries dropped)."""
    out: dict[str, float] = {}
    for n, m in results["methods"].items():
        for k, v in m["metrics"].items():
            out[f"{prefix}/{n}/metric/{k}"] = v
        if m.get("sncd"):
            out[f"{prefix}/{n}/metric/sncd"] = m["sncd"]["total"]
            for i, v in enumerate(m["sncd"]["per_layer"]):
                out[f"{prefix}/{n}/metric/sncd_layer{i}"] = v
        for e, by_factor in (m.get("editing") or {}).items():
            for fk, row in by_factor.items():
                for k, v in row.items():
                    out[f"{prefix}/{n}/edit/{e}/{fk}/{k}"] = v
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}


ZERO_FACTORS = ("+0", "0", "-0")


def edited_means(
    method: Mapping[str, Any], keys: Sequence[str] = ("fid", "id")
) -> dict[str, float | None]:
    """Mean edited FID and ID (or other ``keys`` among fid, id, lpips, sncd) of a method over
    every edit and non-zero factor (None: no data)."""
    out: dict[str, float | None] = {}
    for key in keys:
        vals = [
            row[key]
            for by_factor in (method.get("editing") or {}).values()
            for fk, row in by_factor.items()
            if fk not in ZERO_FACTORS
            and isinstance(row.get(key), int | float)
            and not math.isnan(row[key])
        ]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def edited_means_per_image(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """Per image, the mean of an editing metric over every edit and non-zero factor.

    Args:
        rows: per-image rows of ``evaluate_method`` (``per_image/<method>.csv``), with columns
            ``edit/<edit name>/<factor>/<metric>``.
        key: the metric (id, lpips, sncd).

    Returns:
        One value per row, in order (NaN where a row has no such column).
    """
    out = []
    for r in rows:
        vals = []
        for col, v in r.items():
            parts = col.split("/")
            if len(parts) < 4 or parts[0] != "edit" or parts[-1] != key:
                continue
            if parts[-2] in ZERO_FACTORS or v is None or v == "":
                continue
            x = float(v)
            if not math.isnan(x):
                vals.append(x)
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


def two_stage_table(results: Mapping[str, Any]) -> list[str]:
    """Rows = first-stage method x {no refinement, PTI}: fidelity, edited FID / ID (means over
    edits and non-zero factors) and SNCD of the pivots; '–' where a stage was not run."""
    methods: Mapping[str, Any] = results["methods"]
    cols = [c for c in FIDELITY_COLUMNS if any(c[0] in m["metrics"] for m in methods.values())]
    header = ["method", "refinement", *[h for _, h, _ in cols]]
    header += ["edited FID ↓", "edited ID ↑", "SNCD of pivots ↓"]
    rows = []
    for entry in results["two_stage"]:
        for stage, label in (("none", "none"), ("pti", "PTI")):
            name = entry.get(stage)
            m = methods.get(name) if name else None
            if m is None:
                rows.append([entry["method"], label] + ["–"] * (len(header) - 2))
                continue
            ed = edited_means(m)
            s = m.get("sncd") or {}
            if not s and stage == "pti" and entry.get("none") in methods:
                s = methods[entry["none"]].get("sncd") or {}  # PTI keeps the pivots: same SNCD
            rows.append(
                [entry["method"], label]
                + [_fmt(m["metrics"].get(k), f) for k, _, f in cols]
                + [_fmt(ed["fid"], ".2f"), _fmt(ed["id"], ".4f"), _fmt(s.get("total"), ".4f")]
            )
    return ["Two-stage inversion (first stage x result refinement):", "", *_table(header, rows)]


def editability_axes(
    metrics: Mapping[str, Any], *, classifier: bool = False
) -> list[tuple[str, str]]:
    """The per-image editability measures worth plotting against SNCD, as (key, axis label).

    ``edit_target_shift`` (the attribute classifier's reading of edit success) when a classifier
    reads the edits; ``edit_lpips`` / ``edit_id`` when ``metrics.editing`` computes them, their
    label saying so when the network behind them is a stand-in (``metrics.lpips.backbone:
    random``, ``metrics.id.weights: random``), whose numbers are not the published metric.
    """
    from lsap.metrics.scorer import ScorerSettings, metric_option

    s = ScorerSettings.from_config(metrics)
    axes = []
    if classifier:
        axes.append(("edit_target_shift", "target attribute shift (classifier), ↑"))
    if "lpips" in s.editing:
        stand_in = str(metric_option(s.lpips, "lpips", "backbone")) == "random"
        label = "LPIPS(edited, unedited)" + (" [random-network stand-in]" if stand_in else "")
        axes.append(("edit_lpips", label))
    if "id" in s.editing:
        stand_in = str(metric_option(s.id, "id", "weights")) == "random"
        label = "ID(edited, original)" + (" [random-network stand-in]" if stand_in else "")
        axes.append(("edit_id", label))
    return axes


def fid_label(metrics: Mapping[str, Any]) -> str:
    """Axis label of the edited images' FID, naming its feature space (Inception or not)."""
    from lsap.metrics.scorer import ScorerSettings, feature_name

    name = feature_name(ScorerSettings.from_config(metrics))
    space = {
        "inception": "Inception",
        "toy_classifier": "toy classifier features",
        "random": "random-network stand-in",
    }.get(name, name)
    return f"FID(edited, originals) [{space}]"
