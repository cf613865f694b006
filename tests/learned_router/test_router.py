"""Train -> save -> load -> choose on data with a known answer, and the artifact's pieces."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from polyroute.learned_router.pricing import estimate_cost
from polyroute.learned_router.records import parse_record, to_matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.train import train
from polyroute.learned_router.trees import TreeEnsemble

from .synthetic import CHEAP, STRONG, prompt, records


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    matrix = to_matrix([parse_record(r) for r in records(60)])
    path = tmp_path_factory.mktemp("router") / "router.npz"
    train(matrix).save(path)
    return path


def test_artifact_is_small_and_loads_without_training_data(saved: Path) -> None:
    assert saved.stat().st_size < 3_000_000
    router = LearnedRouter.load(saved)
    assert router.models == sorted([CHEAP, STRONG])
    assert router.strong == STRONG


def test_choose_sends_easy_to_cheap_and_hard_to_strong(saved: Path) -> None:
    router = LearnedRouter.load(saved)
    rng = random.Random(7)
    # a quality point is worth 0.5 over a cost gap of 0.0099 USD -> lambda of about 50 per USD
    for _ in range(10):
        easy = router.choose(prompt("easy", rng), [CHEAP, STRONG], quality_per_dollar=50.0)
        hard = router.choose(prompt("hard", rng), [CHEAP, STRONG], quality_per_dollar=50.0)
        assert easy.model == CHEAP, easy
        assert hard.model == STRONG, hard
        assert hard.scores[STRONG] - hard.scores[CHEAP] > 0.5
        assert set(hard.costs) == {CHEAP, STRONG}


def test_knob_extremes(saved: Path) -> None:
    router = LearnedRouter.load(saved)
    hard = prompt("hard", random.Random(3))
    assert router.choose(hard, [CHEAP, STRONG], quality_per_dollar=1e9).model == CHEAP
    assert router.choose(hard, [CHEAP, STRONG], quality_per_dollar=0.0).model == STRONG


def test_threshold_routes_on_predicted_lead(saved: Path) -> None:
    router = LearnedRouter.load(saved)
    rng = random.Random(5)
    easy, hard = prompt("easy", rng), prompt("hard", rng)
    assert router.choose(hard, [CHEAP, STRONG], threshold=0.5).model == STRONG
    assert router.choose(easy, [CHEAP, STRONG], threshold=0.5).model == CHEAP
    assert router.choose(easy, [CHEAP, STRONG], threshold=-10.0).model == STRONG
    # half the (half easy, half hard) training prompts clear the median threshold
    t = router.threshold_for_strong_share(0.5)
    assert router.choose(hard, [CHEAP, STRONG], threshold=t).model == STRONG


def test_unknown_candidates_are_ignored_and_none_known_is_an_error(saved: Path) -> None:
    router = LearnedRouter.load(saved)
    d = router.choose("prove the theorem", [STRONG, "someone/else"])
    assert d.model == STRONG
    assert "someone/else" in d.reason
    with pytest.raises(ValueError):
        router.choose("hi", ["someone/else"])


def test_choose_from_a_thread_pool(saved: Path) -> None:
    router = LearnedRouter.load(saved)
    rng = random.Random(11)
    prompts = [prompt("easy" if i % 2 == 0 else "hard", rng) for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: router.choose(p, [CHEAP, STRONG], 50.0).model, prompts))
    assert got == [router.choose(p, [CHEAP, STRONG], 50.0).model for p in prompts]
    assert got[::2] == [CHEAP] * 20 and got[1::2] == [STRONG] * 20


def test_fifty_records_three_arbitrary_models_without_costs(tmp_path: Path) -> None:
    rng = random.Random(1)
    recs = []
    for i in range(50):
        kind = "easy" if i % 2 else "hard"
        recs.append(parse_record({
            "prompt": prompt(kind, rng),
            "scores": {"x": 1.0 if kind == "easy" else 0.0, "y": 0.5, "z": 1.0 if kind == "hard" else 0.2},
        }))
    matrix = to_matrix(recs)
    assert matrix.cost_source == "equal"
    router = train(matrix)
    router.save(tmp_path / "r.npz")
    loaded = LearnedRouter.load(tmp_path / "r.npz")
    assert loaded.choose(prompt("hard", rng), ["x", "y", "z"]).model == "z"
    assert loaded.choose(prompt("easy", rng), ["x", "y", "z"]).model == "x"


def test_price_table_costs_when_records_have_none() -> None:
    recs = [parse_record({"prompt": "a" * 400, "scores": {"gpt-4-1106-preview": 1, "mistralai/Mixtral-8x7B-Instruct-v0.1": 0}})]
    matrix = to_matrix(recs)
    assert matrix.cost_source == "price_table"
    # 100 input tokens, 64 assumed output tokens
    assert matrix.cost[0].tolist() == [pytest.approx((100 * 10 + 64 * 30) / 1e6), pytest.approx((164 * 0.6) / 1e6)]
    assert estimate_cost("unknown-model", "hi") is None


def test_tree_ensemble_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((400, 5))
    y = np.sin(4 * x[:, 0]) + x[:, 1] * x[:, 2] + rng.normal(0, 0.1, 400)
    est = HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=7, early_stopping=False).fit(x, y)
    ens = TreeEnsemble.from_sklearn(est)
    probe = rng.random((50, 5))
    np.testing.assert_allclose(ens.predict(probe), est.predict(probe), rtol=1e-9, atol=1e-9)
    again = TreeEnsemble.from_arrays(ens.to_arrays("t"), "t")
    np.testing.assert_allclose(again.predict(probe), est.predict(probe), rtol=1e-9, atol=1e-9)


def test_malformed_records_are_rejected() -> None:
    with pytest.raises(ValueError):
        parse_record({"prompt": "x"})
    with pytest.raises(ValueError):
        parse_record({"prompt": 3, "scores": {"a": 1}})


def test_saved_router_predicts_like_the_trained_one(tmp_path: Path) -> None:
    matrix = to_matrix([parse_record(r) for r in records(60, seed=4)])
    router = train(matrix)
    router.save(tmp_path / "r.npz")
    loaded = LearnedRouter.load(tmp_path / "r.npz")
    probe = [prompt("easy" if i % 2 else "hard", random.Random(i)) for i in range(10)]
    q1, _ = router.predict(probe)
    q2, _ = loaded.predict(probe)
    # coefficients are stored as float16
    np.testing.assert_allclose(q1, q2, atol=5e-3)
    assert loaded.stage2.kind == router.stage2.kind
    assert loaded.info["records"] == 60
