"""What the quality-per-dollar knob does: the operating points chosen on held-out training records.

``argmax q̂ - λ·ĉ`` on the router's predictions is one policy per λ, but the predictions are shrunk
and noisy, so the router at λ is not always the best use of "one dollar is worth λ quality". Also,
where per-prompt predictions carry little signal, sending every prompt to one model does better. So,
on training records the router did not learn from (cross-validated or held out), each candidate
policy gets a (mean cost, mean quality) point:

* the router at each λ' of a grid, where it beats the static mix of single models at the same cost by
  more than the noise (one standard error, paired over the records);
* each single model the router may pick (a static choice).

The upper convex hull of those points is the set of policies worth serving. Hull vertex i is the one
that maximises ``quality - λ·cost`` for λ between the slopes of its two edges, so serving knob λ picks
exactly one vertex: no random mixing is needed. That vertex is either "the router at λ'" or "every
prompt to model k". The evaluation sweeps λ through the same mapping (evaluate.py), and judges the
result with the same hull and metrics as the static mix of single models.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from polyroute.learned_router.metrics import lambda_grid, routed_point, upper_hull


@dataclass(frozen=True)
class OperatingPoints:
    slopes: np.ndarray  # (K,) strictly decreasing; vertex i serves lambda in [slopes[i], slopes[i-1])
    router_lambda: np.ndarray  # (K + 1,) the router's own knob at vertex i; NaN where one model serves all
    model: np.ndarray  # (K + 1,) int64: the model that serves every prompt at vertex i; -1 for the router

    def select(self, lam: float) -> tuple[float | None, int | None]:
        """(router knob to use, None) or (None, model index) for the served knob ``lam``."""
        i = int(np.count_nonzero(self.slopes > lam))
        k = int(self.model[i])
        return (None, k) if k >= 0 else (float(self.router_lambda[i]), None)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"op_slopes": self.slopes, "op_lambda": self.router_lambda, "op_model": self.model}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> OperatingPoints | None:
        if "op_slopes" not in arrays:
            return None
        return cls(arrays["op_slopes"].astype(np.float64), arrays["op_lambda"].astype(np.float64),
                   arrays["op_model"].astype(np.int64))


def route(pred_quality: np.ndarray, pred_cost: np.ndarray, eligible: np.ndarray, lam: float) -> np.ndarray:
    """The router's choice per prompt at knob ``lam``: best predicted utility, cheaper on ties."""
    utility = np.where(eligible[None, :], pred_quality - lam * pred_cost, -np.inf)
    best = utility.max(axis=1, keepdims=True)
    # among the (near-)ties take the cheapest predicted model
    cost = np.where(utility >= best - 1e-12, pred_cost, np.inf)
    return np.asarray(np.argmin(cost, axis=1), dtype=np.int64)


def _clearly_above(
    choice: np.ndarray, c: float, static: list[tuple[float, float, float, int]], quality: np.ndarray
) -> bool:
    """Whether the router's point beats the static mix of the same mean cost by more than one standard
    error (paired over the records). The best of 81 knob settings on a few hundred records lands above
    the static mix by luck alone; only a lead larger than the noise is worth serving."""
    hull = upper_hull([p[0] for p in static], [p[1] for p in static])
    by_point = {(p[0], p[1]): p[3] for p in static}
    models = [by_point[(float(x), float(y))] for x, y in hull]
    if c < hull[0, 0]:
        return True  # cheaper than every single model
    rows = np.arange(quality.shape[0])
    if c >= hull[-1, 0]:
        mix = quality[:, models[-1]]
    else:
        i = int(np.searchsorted(hull[:, 0], c, side="right")) - 1
        w = (c - hull[i, 0]) / (hull[i + 1, 0] - hull[i, 0])
        mix = (1 - w) * quality[:, models[i]] + w * quality[:, models[i + 1]]
    diff = quality[rows, choice] - mix
    return float(diff.mean()) > float(diff.std()) / np.sqrt(len(diff))


def fit_operating_points(
    pred_quality: np.ndarray,
    pred_cost: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    eligible: np.ndarray,
) -> OperatingPoints:
    """Hull of the router's sweep and the eligible single models on held-out records (see module doc)."""
    lambdas = lambda_grid(cost, 81)
    points: list[tuple[float, float, float, int]] = []  # cost, quality, router knob, model
    for k in np.flatnonzero(eligible):
        points.append((float(cost[:, k].mean()), float(quality[:, k].mean()), float("nan"), int(k)))
    static = list(points)
    for lam in lambdas:
        choice = route(pred_quality, pred_cost, eligible, lam)
        c, q = routed_point(choice, quality, cost)
        if _clearly_above(choice, c, static, quality):
            points.append((c, q, float(lam), -1))
    # cheapest first; at equal cost the best quality, and a single model before the router (simpler)
    points.sort(key=lambda p: (p[0], -p[1], p[3] < 0))
    frontier: list[tuple[float, float, float, int]] = []
    for p in points:
        if not frontier or p[1] > frontier[-1][1] + 1e-12:
            frontier.append(p)
    hull: list[tuple[float, float, float, int]] = []
    for p in frontier:
        while len(hull) >= 2:
            (x1, y1, *_), (x2, y2, *_) = hull[-2], hull[-1]
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    slopes = [
        (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("inf") for a, b in itertools.pairwise(hull)
    ]
    return OperatingPoints(
        slopes=np.asarray(slopes, dtype=np.float64),
        router_lambda=np.asarray([p[2] for p in hull], dtype=np.float64),
        model=np.asarray([p[3] for p in hull], dtype=np.int64),
    )
