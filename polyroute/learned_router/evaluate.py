"""Judging a router on records: RouteLLM figures for two models, RouterBench figures for any number.

Baselines reported next to the router:
  * random: RouteLLM's random router (uniform random scores) for two models; for several, a uniformly
    random model per prompt (one point);
  * prompt_length: longer prompt -> stronger model (two models);
  * best single model, and the best static mix (upper convex hull of the single models' points);
  * oracle: per prompt the truly best answer for each quality-per-dollar value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from polyroute.learned_router.features import HashedCounts, dense_matrix, hash_counts
from polyroute.learned_router.metrics import (
    aiq,
    cost_to_reach,
    hull_quality_at,
    lambda_grid,
    routed_point,
    routellm_summary,
    sweep_utility,
    upper_hull,
)
from polyroute.learned_router.records import Matrix
from polyroute.learned_router.router import LearnedRouter


def _r(v: float | None, nd: int = 6) -> float | None:
    return None if v is None else round(float(v), nd)


def _curve_summary(hull: np.ndarray, c_min: float, c_max: float, target: float) -> dict[str, Any]:
    return {
        "aiq": _r(aiq(hull, c_min, c_max)),
        "cost_to_match_best_single": _r(cost_to_reach(hull, target), 9),
        "max_quality": _r(hull[:, 1].max()),
        "quality_at_half_best_single_cost": None,  # filled by caller
        "hull": [[_r(c, 9), _r(q)] for c, q in hull],
    }


def length_scores(prompts: list[str]) -> np.ndarray:
    return np.array([len(p) for p in prompts], dtype=np.float64)


def cost_quality_report(
    pred_quality: np.ndarray,
    pred_cost: np.ndarray,
    matrix: Matrix,
    seed: int = 0,
    policy: Callable[[float], np.ndarray] | None = None,
) -> dict[str, Any]:
    """RouterBench-style comparison of a router's (quality, cost) predictions with the baselines.

    ``policy(lam)`` gives the model index per prompt that the served router picks at knob ``lam``
    (LearnedRouter.route_batch); without it, ``argmax pred_quality - lam * pred_cost``.
    """
    q, c = matrix.quality, matrix.cost
    single_cost, single_quality = c.mean(axis=0), q.mean(axis=0)
    c_min, c_max = float(single_cost.min()), float(single_cost.max())
    best = int(np.argmax(single_quality - 1e-12 * single_cost))
    target = float(single_quality[best])

    lambdas = lambda_grid(c)
    if policy is None:
        router_pts = sweep_utility(pred_quality, pred_cost, lambdas, q, c)
    else:
        router_pts = np.asarray([routed_point(policy(lam), q, c) for lam in lambdas], dtype=np.float64)
    router_hull = upper_hull(router_pts[:, 0], router_pts[:, 1])
    static_hull = upper_hull(single_cost, single_quality)
    oracle_pts = sweep_utility(q, c * (1 + 1e-9), lambdas, q, c)  # ties -> cheaper answer
    oracle_hull = upper_hull(oracle_pts[:, 0], oracle_pts[:, 1])
    rng = np.random.default_rng(seed)
    pick = np.asarray(rng.integers(0, q.shape[1], size=q.shape[0]), dtype=np.int64)
    rows = np.arange(q.shape[0])
    rand_pt = (float(c[rows, pick].mean()), float(q[rows, pick].mean()))
    rand_hull = upper_hull([rand_pt[0]], [rand_pt[1]])

    out: dict[str, Any] = {
        "cost_range": [_r(c_min, 9), _r(c_max, 9)],
        "best_single": {"model": matrix.models[best], "quality": _r(target), "cost": _r(single_cost[best], 9)},
        "single_models": {
            m: {"quality": _r(single_quality[j]), "cost": _r(single_cost[j], 9)} for j, m in enumerate(matrix.models)
        },
    }
    half_cost = float(single_cost[best]) / 2
    for name, hull in (
        ("router", router_hull),
        ("static_mix", static_hull),
        ("random", rand_hull),
        ("oracle", oracle_hull),
    ):
        summary = _curve_summary(hull, c_min, c_max, target)
        summary["quality_at_half_best_single_cost"] = _r(hull_quality_at(hull, half_cost))
        out[name] = summary
    out["router_points"] = [[_r(a, 9), _r(b)] for a, b in router_pts]
    return out


def evaluate(
    router: LearnedRouter,
    matrix: Matrix,
    counts: HashedCounts | None = None,
    dense: np.ndarray | None = None,
    num_results: int = 10,
    seed: int = 0,
    include_points: bool = False,
) -> dict[str, Any]:
    """All figures for ``router`` on ``matrix`` (whose models must include the router's)."""
    missing = [m for m in router.models if m not in matrix.models]
    if missing:
        raise ValueError(f"evaluation data lacks the router's models {missing}")
    cols = [matrix.models.index(m) for m in router.models]
    sub = Matrix(matrix.prompts, matrix.tasks, list(router.models), matrix.quality[:, cols],
                 matrix.cost[:, cols], matrix.cost_source)
    if counts is None:
        counts = hash_counts(sub.prompts, router.featurizer.bits)
    if dense is None:
        dense = dense_matrix(sub.prompts)
    pred_quality, gap = router.predict_from(counts, dense)
    pred_cost = router.predict_cost(sub.prompts)
    out: dict[str, Any] = {
        "records": len(sub.prompts),
        "models": sub.models,
        "cost_source": sub.cost_source,
    }
    if len(sub.models) == 2:
        si = int(np.argmax(router.mean_quality))
        wi = 1 - si
        qs, qw = sub.quality[:, si], sub.quality[:, wi]
        score = gap if gap is not None else pred_quality[:, si] - pred_quality[:, wi]
        rng = np.random.default_rng(seed)
        out["strong_model"] = sub.models[si]
        out["weak_model"] = sub.models[wi]
        out["strong_quality"] = _r(qs.mean())
        out["weak_quality"] = _r(qw.mean())
        out["routellm"] = {
            "router": {k: _r(v, 4) for k, v in routellm_summary(score, qs, qw, num_results).items()},
            "random": {
                k: _r(v, 4) for k, v in routellm_summary(rng.random(len(qs)), qs, qw, num_results).items()
            },
            "prompt_length": {
                k: _r(v, 4)
                for k, v in routellm_summary(length_scores(sub.prompts), qs, qw, num_results).items()
            },
        }
    # the knob swept through exactly what ``choose`` serves (operating points, dominated models left out)
    cq = cost_quality_report(pred_quality, pred_cost, sub, seed,
                             policy=lambda lam: router.route_batch(pred_quality, pred_cost, lam))
    if not include_points:
        cq.pop("router_points", None)
        for key in ("router", "static_mix", "random", "oracle"):
            cq[key].pop("hull", None)
    out["cost_quality"] = cq
    return out
