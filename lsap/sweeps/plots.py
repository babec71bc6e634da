"""PNG plots of a sweep report: every metric against the SNCD weight, and the fidelity-vs-
editability frontier, with the no-SNCD baseline and the generator samples' SNCD as reference lines.

matplotlib is imported when a plot is drawn (never at import), through its object API (no pyplot,
no global backend switch).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from lsap.sweeps.report import SweepReport

PLOT_FILES = ("sweep_metrics.png", "sweep_frontier.png")
PANELS = (
    ("sncd", "SNCD (total, lower = more aligned)"),
    ("mse", "MSE (lower is better)"),
    ("lpips", "LPIPS (lower is better)"),
    ("id", "ID similarity (higher is better)"),
    ("target_success", "edit target success (higher is better)"),
    ("target_shift", "edit target shift (higher is better)"),
)


def _finite(v: Any) -> bool:
    return isinstance(v, float | int) and math.isfinite(v)


def _has(report: SweepReport, key: str) -> bool:
    return any(_finite(r.get(key)) for r in report.rows)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _xscale(ax, weights: list[float]) -> None:
    positive = [w for w in weights if w > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("symlog", linthresh=min(positive))


def metrics_figure(report: SweepReport):
    """One panel per available metric against ``loss.sncd``; one line per series."""
    from matplotlib.figure import Figure

    panels = [(k, t) for k, t in PANELS if _has(report, k)]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), layout="constrained")
    base = report.baseline()
    ref = report.reference
    weights = [r["sncd_weight"] for r in report.rows]
    for p, (key, title) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, p + 1)
        for label, series in report.series().items():
            pts = [(r["sncd_weight"], r[key]) for r in series if _finite(r.get(key))]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        if base is not None and _finite(base.get(key)):
            ax.axhline(base[key], color="gray", ls="--", lw=1, label="no-SNCD baseline")
        if key == "sncd" and _finite(ref.get("samples_sncd_mean")):
            ax.axhline(
                ref["samples_sncd_mean"], color="tab:red", ls=":", lw=1.5, label="generator samples"
            )
        if key == "mse" and base is not None and _finite(base.get("mse")):
            ax.axhline(1.1 * base["mse"], color="gray", ls=":", lw=1, label="baseline +10 %")
        _xscale(ax, weights)
        ax.set_xlabel("loss.sncd")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if p == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"SNCD sweep ({len(report.rows)} lsap-{report.kind} jobs)", fontsize=10)
    return fig


def frontier_figure(report: SweepReport):
    """Fidelity (MSE) against editability: classifier target success when measured, else SNCD
    (the paper's proxy, lower = better), each point labelled with its weight."""
    from matplotlib.figure import Figure

    ykey = "target_success" if _has(report, "target_success") else "sncd"
    fig = Figure(figsize=(6.0, 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    base = report.baseline()
    for label, series in report.series().items():
        pts = [r for r in series if _finite(r.get("mse")) and _finite(r.get(ykey))]
        if not pts:
            continue
        ax.plot([r["mse"] for r in pts], [r[ykey] for r in pts], marker="o", label=label)
        for r in pts:
            ax.annotate(
                f"{r['sncd_weight']:g}",
                (r["mse"], r[ykey]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    if base is not None and _finite(base.get("mse")) and _finite(base.get(ykey)):
        ax.plot([base["mse"]], [base[ykey]], marker="*", ms=14, color="k", ls="", label="no SNCD")
        ax.axvline(1.1 * base["mse"], color="gray", ls=":", lw=1, label="baseline MSE +10 %")
    if ykey == "sncd":
        ref = report.reference.get("samples_sncd_mean")
        if _finite(ref):
            ax.axhline(ref, color="tab:red", ls=":", lw=1.5, label="generator samples' SNCD")
        ax.invert_yaxis()  # up = more aligned, the proxy's "better"
        ax.set_ylabel("SNCD of the codes (editability proxy; up = more aligned)")
    else:
        ax.set_ylabel("edit target success (classifier)")
    ax.set_xlabel("MSE (fidelity; left is better)")
    ax.set_title("fidelity vs editability (labels: loss.sncd)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def write_plots(report: SweepReport, out_dir: str | Path) -> dict[str, Path]:
    """Draw both figures into ``out_dir`` (atomically); returns name -> path."""
    from lsap.core.atomic import atomic_write_bytes

    out = Path(out_dir)
    figs = {
        "sweep_metrics.png": metrics_figure(report),
        "sweep_frontier.png": frontier_figure(report),
    }
    return {name: atomic_write_bytes(out / name, _png(fig)) for name, fig in figs.items()}
