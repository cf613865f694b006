"""Metric definitions against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from polyroute.learned_router.metrics import (
    aiq,
    apgr,
    cost_to_reach,
    cpt,
    routellm_curve,
    routellm_summary,
    sweep_utility,
    upper_hull,
)

STRONG = [1.0, 1.0, 1.0, 1.0]
WEAK = [1.0, 1.0, 0.0, 0.0]


def test_routellm_curve_thresholds_are_quantile_edges() -> None:
    # edges at quantiles 0, .5, 1 of the scores: 0.1, 0.25, 0.4 -> 100 %, 50 %, 0 % strong calls
    curve = routellm_curve([0.1, 0.2, 0.3, 0.4], STRONG, WEAK, num_results=2)
    assert curve.strong_pct.tolist() == [0.0, 50.0, 100.0]
    assert curve.accuracy_pct.tolist() == [50.0, 100.0, 100.0]
    assert curve.weak_pct == 50.0
    assert curve.strong_model_pct == 100.0


def test_apgr_and_cpt_of_a_good_router() -> None:
    curve = routellm_curve([0.1, 0.2, 0.3, 0.4], STRONG, WEAK, num_results=2)
    # area: 0..0.5 -> (50 + 100) / 2 * .5 = 37.5, 0.5..1 -> 50; (87.5 - 50) / (100 - 50)
    assert apgr(curve) == pytest.approx(0.75)
    # 50 % of the gap = accuracy 75 -> halfway between 0 % and 50 % strong calls
    assert cpt(curve, 0.5) == pytest.approx(25.0)
    assert cpt(curve, 0.8) == pytest.approx(40.0)


def test_apgr_of_a_backwards_router() -> None:
    summary = routellm_summary([0.4, 0.3, 0.2, 0.1], STRONG, WEAK, num_results=2)
    # curve (0, 50), (50, 50), (100, 100): area 25 + 37.5 = 62.5 -> (62.5 - 50) / 50
    assert summary["apgr"] == pytest.approx(0.25)
    assert summary["cpt_50_pct"] == pytest.approx(75.0)


def test_random_scores_give_apgr_near_half() -> None:
    rng = np.random.default_rng(1)
    n = 20000
    qs = (rng.random(n) < 0.8).astype(float)
    qw = (rng.random(n) < 0.6).astype(float)
    summary = routellm_summary(rng.random(n), qs, qw)
    assert summary["apgr"] == pytest.approx(0.5, abs=0.03)
    assert summary["cpt_50_pct"] == pytest.approx(50.0, abs=3.0)


def test_upper_hull_drops_dominated_and_concave_points() -> None:
    hull = upper_hull([1.0, 3.0, 2.0, 4.0], [0.5, 0.9, 0.6, 0.8])
    # (2, .6) lies under the chord (1, .5)-(3, .9); (4, .8) costs more for less quality
    assert hull.tolist() == [[1.0, 0.5], [3.0, 0.9]]


def test_aiq_is_mean_hull_height_over_cost_range() -> None:
    static = upper_hull([1.0, 3.0, 2.0], [0.5, 0.9, 0.6])
    assert aiq(static, 1.0, 3.0) == pytest.approx(0.7)
    router = upper_hull([1.0, 2.0, 3.0], [0.5, 0.85, 0.9])
    assert aiq(router, 1.0, 3.0) == pytest.approx((0.675 + 0.875) / 2)
    # a curve starting above the cheapest cost earns nothing below its first point
    assert aiq(upper_hull([2.0], [0.8]), 1.0, 3.0) == pytest.approx(0.4)
    # past its dearest point the curve keeps its best quality
    assert aiq(upper_hull([1.0, 2.0], [0.5, 0.7]), 1.0, 3.0) == pytest.approx((0.6 + 0.7) / 2)


def test_cost_to_reach_interpolates_along_the_hull() -> None:
    static = upper_hull([1.0, 3.0], [0.5, 0.9])
    assert cost_to_reach(static, 0.85) == pytest.approx(2.75)
    assert cost_to_reach(static, 0.5) == pytest.approx(1.0)
    assert cost_to_reach(static, 0.95) is None


def test_sweep_utility_moves_from_quality_to_price() -> None:
    quality = np.array([[1.0, 0.0], [1.0, 1.0]])
    cost = np.array([[2.0, 1.0], [2.0, 1.0]])
    pts = sweep_utility(quality, cost, [0.0, 10.0], quality, cost)
    # lambda 0: the best model wherever it is strictly better, cheaper one on the tie is not forced
    assert pts[1].tolist() == [1.0, 0.5]
    assert pts[0][1] == pytest.approx(1.0)
