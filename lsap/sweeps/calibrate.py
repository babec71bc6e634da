"""Choosing the SNCD weight from a sweep: a pure rule, table in, weight out (docs/calibration.md).

The weight that suits a generator depends on the scale of the objective's other terms (0.5 is the
paper's against L2 1.0 + LPIPS 0.8 + ID 0.1 at 1024 px; against L2 alone on the toy faces it is
about ten times the whole L2 term), so it is read off a short sweep instead of hand-tuned:

- ``fidelity``: the largest weight whose fidelity metric (default MSE) stays within ``tolerance``
  of the no-SNCD baseline (the weight-0 job): as much alignment as the fidelity budget allows.
- ``alignment``: the smallest weight whose mean SNCD reaches the generator samples' mean: aligned
  like the generator's own faces and no further ("alignment is a target, not a minimum").
- ``both`` (default): the ``alignment`` weight when it is within the fidelity budget, else the
  ``fidelity`` weight (the budget wins; the report says the samples' level was not reached).

Weights not in the sweep are never returned (no interpolation): sweep finer around the choice to
refine it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RULES = ("both", "fidelity", "alignment")
HIGHER_IS_BETTER = ("psnr", "ssim", "id")


@dataclass(frozen=True)
class Calibration:
    """The chosen weight and why.

    Attributes:
        weight: the chosen ``loss.sncd``.
        rule, metric, tolerance: the settings of the rule.
        reason: one sentence.
        evidence: per swept weight ``{weight, <metric>, <metric>_vs_baseline, within_budget,
            sncd, reaches_samples}``.
    """

    weight: float
    rule: str
    metric: str
    tolerance: float
    reason: str
    samples_sncd: float
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "override": f"loss.sncd={self.weight:g}",
            "rule": self.rule,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "samples_sncd": self.samples_sncd,
            "reason": self.reason,
            "evidence": self.evidence,
        }


def choose_weight(
    rows: Sequence[Mapping[str, Any]],
    *,
    samples_sncd: float,
    rule: str = "both",
    metric: str = "mse",
    tolerance: float = 0.10,
) -> Calibration:
    """Pick ``loss.sncd`` from a sweep's rows (one row per weight, one objective otherwise).

    Args:
        rows: dicts with ``sncd_weight``, ``sncd`` (mean total SNCD of the codes) and ``metric``.
        samples_sncd: the generator samples' mean SNCD (``lsap.alignment.reference``).
        rule: ``both`` | ``fidelity`` | ``alignment`` (module docstring).
        metric: the fidelity metric (``mse``, ``lpips``: lower is better; ``psnr``, ``ssim``,
            ``id``: higher is better).
        tolerance: relative fidelity budget: ``metric <= (1 + tolerance) * baseline`` (lower is
            better) or ``>= (1 - tolerance) * baseline``.

    Raises:
        ValueError: unknown rule, no weight-0 row, a weight given twice, or a missing value.
    """
    if rule not in RULES:
        raise ValueError(f"calibration rule must be one of {RULES}, got {rule!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    weights = [float(r["sncd_weight"]) for r in rows]
    if len(set(weights)) != len(weights):
        raise ValueError(f"each weight once, got {sorted(weights)}: calibrate one series at a time")
    by_w = {float(r["sncd_weight"]): r for r in rows}
    if 0.0 not in by_w:
        raise ValueError("calibration needs the no-SNCD baseline: a loss.sncd=0 job in the sweep")
    base = _value(by_w[0.0], metric)
    higher = metric in HIGHER_IS_BETTER
    evidence = []
    for w in sorted(by_w):
        v, s = _value(by_w[w], metric), _value(by_w[w], "sncd")
        rel = v / base - 1.0 if base != 0 else math.inf
        within = rel >= -tolerance if higher else rel <= tolerance
        evidence.append(
            {
                "weight": w,
                metric: v,
                f"{metric}_vs_baseline": rel,
                "within_budget": bool(within),
                "sncd": s,
                "reaches_samples": bool(s <= samples_sncd),
            }
        )
    budget = [e for e in evidence if e["within_budget"]]  # the baseline always is
    largest = max(budget, key=lambda e: e["weight"])
    reaching = [e for e in evidence if e["reaches_samples"] and e["weight"] > 0]
    first = min(reaching, key=lambda e: e["weight"]) if reaching else None
    pct = f"{100 * tolerance:g} %"
    if rule == "fidelity":
        chosen = largest
        reason = f"largest weight with {metric} within {pct} of the baseline"
    elif rule == "alignment":
        if first is None:
            chosen = max(evidence, key=lambda e: e["weight"])
            reason = (
                f"no weight reaches the samples' SNCD {samples_sncd:.4g}: the largest swept "
                "weight (sweep further)"
            )
        else:
            chosen = first
            reason = f"smallest weight whose SNCD reaches the samples' mean {samples_sncd:.4g}"
    elif first is not None and first["within_budget"]:
        chosen = first
        reason = (
            f"smallest weight whose SNCD reaches the samples' mean {samples_sncd:.4g}, "
            f"with {metric} within {pct} of the baseline"
        )
    else:
        chosen = largest
        why = (
            "no swept weight reaches the samples' SNCD"
            if first is None
            else f"reaching the samples' SNCD (weight {first['weight']:g}) costs "
            f"{100 * first[f'{metric}_vs_baseline']:+.1f} % {metric}"
        )
        reason = f"{why}: the largest weight with {metric} within {pct} of the baseline"
    return Calibration(
        weight=float(chosen["weight"]),
        rule=rule,
        metric=metric,
        tolerance=float(tolerance),
        reason=reason,
        samples_sncd=float(samples_sncd),
        evidence=evidence,
    )


def _value(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"the row of weight {row.get('sncd_weight')} has no {key} value")
    return v
