"""Router quality metrics, computed the way the papers that define them do.

Two models (RouteLLM, arXiv 2406.18665, as in lm-sys/RouteLLM ``routellm/evals``):
  * the router gives every prompt a score (its estimate that the strong model is needed);
  * thresholds are the ``num_results + 1`` quantile edges of those scores (``pd.qcut`` bins, linear
    interpolation; where ``pd.qcut`` would refuse duplicate edges from tied scores they are kept here,
    adding only zero-width steps); at every edge but the last the strong model gets the prompts with
    score >= edge, at the last one those with score > edge (the sweep runs from 100 % to 0 % strong);
  * each threshold gives (strong-call %, accuracy %); the curve is sorted by strong-call %;
  * APGR = (AUC - weak AUC) / (strong AUC - weak AUC), trapezoid areas over strong-call fraction;
  * CPT(x %) = ``np.interp(weak + x * (strong - weak), accuracy, strong %)``: the share of strong calls
    needed to recover x % of the gap. Like RouteLLM's code it relies on the accuracy column being
    (nearly) increasing along the sorted curve.

Several models (RouterBench, arXiv 2403.12031):
  * a router sweeps its cost knob and yields (mean cost, mean quality) points;
  * its curve is the non-decreasing upper convex hull of those points (mixing two settings at random
    reaches any point on the segment between them);
  * AIQ = area under that hull over the cost range [c_min, c_max] of the single models, divided by
    (c_max - c_min). Below the router's cheapest point the hull counts as quality 0, past its dearest
    point as that point's quality (spending more never lowers quality).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


# ----------------------------------------------------------------------------- two models (RouteLLM)


@dataclass(frozen=True)
class RouteLLMCurve:
    strong_pct: FloatArray  # sorted ascending, in percent
    accuracy_pct: FloatArray  # mean quality in percent, aligned with strong_pct
    weak_pct: float  # weak model alone, percent
    strong_model_pct: float  # strong model alone, percent


def routellm_curve(
    strong_scores: ArrayLike,
    strong_quality: ArrayLike,
    weak_quality: ArrayLike,
    num_results: int = 10,
) -> RouteLLMCurve:
    """The (strong-call %, accuracy %) sweep RouteLLM's ``Benchmark.evaluate`` produces."""
    scores = np.asarray(strong_scores, dtype=np.float64)
    qs = np.asarray(strong_quality, dtype=np.float64)
    qw = np.asarray(weak_quality, dtype=np.float64)
    if not (scores.shape == qs.shape == qw.shape) or scores.ndim != 1 or scores.size == 0:
        raise ValueError("scores and qualities must be equal-length non-empty 1-d arrays")
    thresholds = np.quantile(scores, np.linspace(0.0, 1.0, num_results + 1))
    pcts: list[float] = []
    accs: list[float] = []
    last = len(thresholds) - 1
    for i, threshold in enumerate(thresholds):
        selection = scores >= threshold if i != last else scores > threshold
        results = np.where(selection, qs, qw)
        pcts.append(float(selection.sum()) / scores.size * 100.0)
        accs.append(float(results.sum()) / scores.size * 100.0)
    order = np.argsort(np.asarray(pcts), kind="stable")
    return RouteLLMCurve(
        strong_pct=np.asarray(pcts)[order],
        accuracy_pct=np.asarray(accs)[order],
        weak_pct=float(qw.mean() * 100.0),
        strong_model_pct=float(qs.mean() * 100.0),
    )


def apgr(curve: RouteLLMCurve) -> float:
    """Average performance gap recovered: area between the curve and the weak line, normalised."""
    x = curve.strong_pct / 100.0
    auc = float(np.trapezoid(curve.accuracy_pct, x))
    weak_auc = float(np.trapezoid(np.full_like(x, curve.weak_pct), x))
    strong_auc = float(np.trapezoid(np.full_like(x, curve.strong_model_pct), x))
    if strong_auc == weak_auc:
        return float("nan")
    return (auc - weak_auc) / (strong_auc - weak_auc)


def cpt(curve: RouteLLMCurve, gap_fraction: float) -> float:
    """Call-performance threshold: strong-call percentage needed to recover ``gap_fraction`` of the gap."""
    target = gap_fraction * (curve.strong_model_pct - curve.weak_pct) + curve.weak_pct
    return float(np.interp(target, curve.accuracy_pct, curve.strong_pct))


def routellm_summary(
    strong_scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike, num_results: int = 10
) -> dict[str, float]:
    curve = routellm_curve(strong_scores, strong_quality, weak_quality, num_results)
    return {
        "apgr": apgr(curve),
        "cpt_50_pct": cpt(curve, 0.5),
        "cpt_80_pct": cpt(curve, 0.8),
    }


# ------------------------------------------------------------------------ several models (RouterBench)


def upper_hull(costs: ArrayLike, qualities: ArrayLike) -> FloatArray:
    """Non-decreasing upper convex hull of (cost, quality) points, as an (m, 2) array sorted by cost.

    Points that cost more but give no more quality than a cheaper one are dropped, then the concave
    (upper) envelope is kept.
    """
    pts = np.column_stack([np.asarray(costs, dtype=np.float64), np.asarray(qualities, dtype=np.float64)])
    if pts.shape[0] == 0:
        raise ValueError("no points")
    # sort by cost, and for equal cost best quality first
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    frontier: list[tuple[float, float]] = []
    for c, q in pts:
        if frontier and q <= frontier[-1][1]:
            continue  # dominated: no cheaper-or-equal point is worse
        frontier.append((float(c), float(q)))
    hull: list[tuple[float, float]] = []
    for p in frontier:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord from hull[-2] to p
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return np.asarray(hull, dtype=np.float64)


def hull_quality_at(hull: FloatArray, cost: float) -> float:
    """Best quality reachable on the hull for a mean spend of ``cost`` (0 below its cheapest point)."""
    if cost < hull[0, 0]:
        return 0.0
    return float(np.interp(cost, hull[:, 0], hull[:, 1]))


def aiq(hull: FloatArray, c_min: float, c_max: float) -> float:
    """Area under the hull over [c_min, c_max] divided by the range (RouterBench AIQ)."""
    if c_max <= c_min:
        # every model costs the same: the only meaningful figure is the best quality
        return float(hull[:, 1].max())
    xs = np.concatenate([[c_min, c_max], hull[:, 0]])
    xs = np.unique(np.clip(xs, c_min, c_max))
    # a step at the hull's first point: evaluate just below it too
    first = hull[0, 0]
    if c_min < first <= c_max:
        xs = np.unique(np.concatenate([xs, [np.nextafter(first, -np.inf)]]))
    ys = np.array([hull_quality_at(hull, float(x)) for x in xs])
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


def cost_to_reach(hull: FloatArray, quality: float) -> float | None:
    """Least mean cost at which the hull reaches ``quality`` (None if it never does)."""
    if hull[-1, 1] < quality - 1e-12:
        return None
    idx = int(np.argmax(hull[:, 1] >= quality - 1e-12))
    if idx == 0:
        return float(hull[0, 0])
    (x1, y1), (x2, y2) = hull[idx - 1], hull[idx]
    return float(x1 + (quality - y1) * (x2 - x1) / (y2 - y1))


def routed_point(choice: NDArray[np.int64], quality: FloatArray, cost: FloatArray) -> tuple[float, float]:
    """Mean (cost, quality) when prompt i goes to model ``choice[i]`` (quality/cost are n x m)."""
    rows = np.arange(quality.shape[0])
    return float(cost[rows, choice].mean()), float(quality[rows, choice].mean())


def sweep_utility(
    pred_quality: FloatArray,
    pred_cost: FloatArray,
    lambdas: Sequence[float],
    quality: FloatArray,
    cost: FloatArray,
) -> FloatArray:
    """(cost, quality) points of ``argmax pred_quality - lambda * pred_cost`` for every lambda."""
    points = []
    for lam in lambdas:
        choice = np.argmax(pred_quality - lam * pred_cost, axis=1).astype(np.int64)
        points.append(routed_point(choice, quality, cost))
    return np.asarray(points, dtype=np.float64)


def lambda_grid(cost: FloatArray, n: int = 161) -> list[float]:
    """Quality-per-dollar values spanning "price is irrelevant" to "only price matters"."""
    positive = cost[cost > 0]
    scale = float(np.median(positive)) if positive.size else 1.0
    # quality lives in [0, 1]; spread lambda so that lambda * typical cost runs from 1e-4 to 1e4
    return [0.0, *(float(v) / scale for v in np.logspace(-4, 4, n))]
