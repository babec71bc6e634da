"""The toy-scale reproduction's table: the paper's claim (lower SNCD goes with better edits at a
small fidelity cost) checked on held-out procedural faces, method against its no-SNCD baseline.

From the demo's results (``lsap.demo.compare``) on one image group: per method SNCD, MSE, PSNR,
LPIPS, FID of the reconstructions, and editability (the classifier's target change and success,
the other attributes' change, FID of the edited images), with standard errors over images for
the per-image metrics; per pair (baseline, LSAP) the fraction of images on which LSAP is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PAIRS = (("e4e", "lsap_e"), ("projector", "lsap_o"))

# (key, header, better) of the reproduction table
PER_IMAGE = (
    ("sncd", "SNCD", "low"),
    ("mse", "MSE", "low"),
    ("psnr", "PSNR", "high"),
    ("lpips", "LPIPS*", "low"),
    ("id", "ID", "high"),
)
EDITING = (
    ("target_shift", "target shift", "high"),
    ("target_success", "target success", "high"),
    ("others_abs_delta", "others |Δ|", "low"),
    ("others_flip_rate", "others flipped", "low"),
    ("fid", "FID edited", "low"),
)


def _mean_sem(values: Sequence[float]) -> tuple[float, float]:
    v = [x for x in values if isinstance(x, float) and math.isfinite(x)]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, math.nan
    var = sum((x - m) ** 2 for x in v) / (len(v) - 1)
    return m, math.sqrt(var / len(v))


def method_rows(
    methods: Mapping[str, Mapping[str, Any]],
    editability: Mapping[str, Mapping[str, float]],
    names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per method: ``<metric>`` (mean over ``names``) and ``<metric>_sem`` for the per-image
    metrics, ``fid`` of the reconstructions, ``seconds_per_image``, and the editability means
    prefixed ``edit_`` (``edit_target_shift``, ``edit_others_abs_delta``, ``edit_fid``, ...).

    Args:
        methods: ``score_inversions``' output.
        editability: ``editability_summary``'s output.
        names: the images the per-image means run over (e.g. the toy faces).
    """
    rows = {}
    for name, m in methods.items():
        row: dict[str, float] = {}
        for key, _, _ in PER_IMAGE:
            vals = [m["per_image"][n].get(key) for n in names]
            if any(isinstance(v, float) for v in vals):
                row[key], row[f"{key}_sem"] = _mean_sem(vals)
        fid = m.get("fid") or {}
        row["fid"] = next(iter(fid.values())) if fid else math.nan
        row["seconds_per_image"] = float(m["seconds_per_image"])
        for key, v in (editability.get(name) or {}).items():
            row[f"edit_{key}"] = float(v)
        rows[name] = row
    return rows


def paired_comparison(
    methods: Mapping[str, Mapping[str, Any]],
    baseline: str,
    method: str,
    names: Sequence[str],
) -> dict[str, float]:
    """Fraction of images on which ``method`` beats ``baseline`` per per-image metric (ties count
    half), e.g. ``{"sncd": 0.98, "mse": 0.10, ...}``."""
    out = {}
    for key, _, better in PER_IMAGE:
        wins, n = 0.0, 0
        for img in names:
            a = methods[baseline]["per_image"][img].get(key)
            b = methods[method]["per_image"][img].get(key)
            if not (isinstance(a, float) and isinstance(b, float)):
                continue
            if not (math.isfinite(a) and math.isfinite(b)):
                continue
            n += 1
            if a == b:
                wins += 0.5
            elif (b < a) == (better == "low"):
                wins += 1.0
        if n:
            out[key] = wins / n
    return out


def _cell(row: Mapping[str, float], key: str) -> str:
    v = row.get(key, math.nan)
    if not math.isfinite(v):
        return "–"
    digits = 2 if key in ("psnr", "fid", "edit_fid") else 4
    s = f"{v:.{digits}f}"
    sem = row.get(f"{key}_sem", math.nan)
    return f"{s} ± {sem:.{digits}f}" if math.isfinite(sem) else s


def markdown_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """The rows as a Markdown table (± = standard error over images; arrows: better side)."""
    cols = [(k, h, b) for k, h, b in PER_IMAGE if any(k in r for r in rows.values())]
    cols.append(("fid", "FID recon", "low"))
    cols += [
        (f"edit_{k}", h, b) for k, h, b in EDITING if any(f"edit_{k}" in r for r in rows.values())
    ]
    cols.append(("seconds_per_image", "s/image", "low"))
    head = ["method", *[f"{h} {'↓' if b == 'low' else '↑'}" for _, h, b in cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name, *[_cell(row, k) for k, _, _ in cols]]) + " |")
    return "\n".join(lines)


def pairs_table(pairs: Mapping[str, Mapping[str, float]]) -> str:
    """``{"lsap_e vs e4e": {metric: fraction}}`` as a Markdown table."""
    keys = [k for k, _, _ in PER_IMAGE if any(k in p for p in pairs.values())]
    lines = [
        "| images where the LSAP method is better | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, p in pairs.items():
        cells = [f"{100 * p[k]:.0f} %" if k in p else "–" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_rows(
    rows: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, float],
    *,
    samples_sncd: float,
    tolerance: float = 0.10,
) -> list[dict[str, Any]]:
    """Each LSAP method against its no-SNCD baseline, with the targets of the claim.

    Args:
        rows: :func:`method_rows`' output.
        weights: method name -> its SNCD weight (encoders: the weight they were trained with).
        samples_sncd: the generator samples' mean SNCD (the alignment reference line).
        tolerance: fidelity budget: LSAP's MSE at most ``(1 + tolerance)`` x the baseline's.

    Returns:
        One dict per LSAP method (baseline order of :data:`PAIRS`, then by weight): ``method``,
        ``baseline``, ``sncd_weight``, ``sncd``, ``mse_vs_baseline`` (ratio), ``success`` and
        ``baseline_success`` (edit target success), and the three targets as booleans
        ``fidelity_ok`` (MSE ratio <= 1 + tolerance), ``alignment_ok`` (SNCD <= samples' and below
        the baseline's), ``editing_ok`` (success above the baseline's).
    """
    out = []
    for base, lsap in PAIRS:
        if base not in rows:
            continue
        b = rows[base]
        names = [m for m in rows if m == lsap or m.startswith(f"{lsap}_")]
        for m in sorted(names, key=lambda n: weights.get(n, math.nan)):
            r = rows[m]
            ratio = r["mse"] / b["mse"]
            succ, bsucc = (
                r.get("edit_target_success", math.nan),
                b.get("edit_target_success", math.nan),
            )
            out.append(
                {
                    "method": m,
                    "baseline": base,
                    "sncd_weight": weights.get(m, math.nan),
                    "sncd": r["sncd"],
                    "baseline_sncd": b["sncd"],
                    "mse_vs_baseline": ratio,
                    "success": succ,
                    "baseline_success": bsucc,
                    "fidelity_ok": bool(ratio <= 1 + tolerance),
                    "alignment_ok": bool(r["sncd"] <= samples_sncd and r["sncd"] < b["sncd"]),
                    "editing_ok": bool(succ > bsucc),
                }
            )
    return out


def frontier_table(frontier: Sequence[Mapping[str, Any]], samples_sncd: float) -> str:
    """:func:`frontier_rows` as a Markdown table (yes / NO per target)."""
    lines = [
        f"| method | vs | SNCD weight | SNCD (samples {samples_sncd:.3f}) | MSE / baseline | "
        "target success (baseline) | fidelity | alignment | editing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in frontier:
        ok = ["yes" if f[k] else "NO" for k in ("fidelity_ok", "alignment_ok", "editing_ok")]
        lines.append(
            f"| {f['method']} | {f['baseline']} | {f['sncd_weight']:g} | {f['sncd']:.4f} "
            f"({f['baseline_sncd']:.4f}) | {f['mse_vs_baseline']:.3f} | {f['success']:.4f} "
            f"({f['baseline_success']:.4f}) | " + " | ".join(ok) + " |"
        )
    return "\n".join(lines)
