"""Features, the length prior, the task-disjoint hold-out and the knob's operating points."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction.text import HashingVectorizer

from polyroute.learned_router.features import char_hashes, dense_features, hash_counts, hash_one, word_hashes
from polyroute.learned_router.operating import OperatingPoints, fit_operating_points
from polyroute.learned_router.records import parse_record, to_matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.stage2 import Stage2, fit_length_prior
from polyroute.learned_router.train import TrainConfig, _holdout, train
from polyroute.learned_router.trees import MergedEnsembles, TreeEnsemble

from .synthetic import CHEAP, STRONG, prompt, records

TEXTS = [
    "What is the integral of x^2 dx from 0 to 1?\nA) 1/3\nB) 1/2",
    "  Ünïcödé  wörds,   tabs\tand\nnew-lines; a b c  ",
    "x",
    "",
    "def f(a, b):\n    return a_b + 2 * b  # sum",
]


@pytest.mark.parametrize("text", TEXTS)
def test_numpy_ngrams_are_scikit_learns_ngrams(text: str) -> None:
    # the same n-grams as HashingVectorizer's analyzers, only hashed differently: equal counts, and
    # equal numbers of distinct n-grams (64-bit hashes do not collide on a handful of n-grams)
    words = HashingVectorizer(ngram_range=(1, 2)).build_analyzer()(text)
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5)).build_analyzer()(text)
    assert len(word_hashes(text)) == len(words)
    assert len(np.unique(word_hashes(text))) == len(set(words))
    assert len(char_hashes(text)) == len(chars)
    assert len(np.unique(char_hashes(text))) == len(set(chars))


def test_long_prompts_whose_lower_case_is_longer_hash_fine() -> None:
    counts = hash_one("İ" * 5000 + " tail words", bits=12)  # "İ".lower() is two code points
    assert len(counts.word_ids) >= 1 and len(counts.char_ids) >= 1


def test_hash_counts_rows_are_hash_one() -> None:
    counts = hash_counts(TEXTS, bits=12)
    for i, text in enumerate(TEXTS):
        one = hash_one(text, bits=12)
        row = counts.char[i]
        assert row.indices.tolist() == one.char_ids.tolist()
        assert row.data.tolist() == one.char_counts.tolist()
        assert counts.word[i].nnz == len(one.word_ids)


def test_single_prompt_path_matches_the_batch_path(tmp_path: Path) -> None:
    matrix = to_matrix([parse_record(r) for r in records(60, seed=3)])
    train(matrix).save(tmp_path / "r.npz")
    router = LearnedRouter.load(tmp_path / "r.npz")
    probe = [prompt("easy" if i % 2 else "hard", random.Random(i)) for i in range(8)] + TEXTS
    batch, _ = router.predict(probe)
    for i, text in enumerate(probe):
        one, _ = router.predict_one(text)
        np.testing.assert_allclose(one[0], batch[i], atol=1e-5)


def test_length_prior_shifts_the_gap_by_its_weight() -> None:
    prompts = ["short?", "a much longer prompt " * 20, "medium length prompt here"]
    dense = np.vstack([dense_features(p) for p in prompts])
    quality = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # the strong model (1) wins on the long one
    prior = fit_length_prior(dense, quality)
    assert prior[1, 0] == pytest.approx(0.0) and prior[0, 0] < 0
    s1 = np.full((3, 3), 0.5)
    _, gap0 = Stage2("linear").predict(s1, dense, strong=1)
    _, gap1 = Stage2("linear", prior=prior, prior_weight=2.0).predict(s1, dense, strong=1)
    assert gap0 is not None and gap1 is not None
    expected = 2.0 * (prior[1, 0] - prior[0, 0]) * (dense[:, 0] - prior[0, 1])
    np.testing.assert_allclose(gap1 - gap0, expected)
    assert gap1[1] > gap1[0]  # longer prompt -> larger predicted lead of the strong model
    arrays = Stage2("linear", prior=prior, prior_weight=2.0).to_arrays()
    again = Stage2.from_arrays("linear", arrays, 2)
    assert again.prior_weight == 2.0
    np.testing.assert_allclose(again.predict(s1, dense, strong=1)[1], gap1)  # type: ignore[arg-type]


def test_task_holdout_keeps_whole_tasks_out() -> None:
    groups = np.repeat(np.array([f"t{i}" for i in range(10)]), 30)
    hold, fit = _holdout(len(groups), 0.2, groups, seed=0)
    assert set(groups[hold]).isdisjoint(groups[fit])
    assert 0.15 <= len(hold) / len(groups) <= 0.35
    assert len(hold) + len(fit) == len(groups)


def test_operating_points_fall_back_to_one_model_when_predictions_are_noise() -> None:
    rng = np.random.default_rng(0)
    n = 400
    quality = np.column_stack([rng.random(n) < 0.5, rng.random(n) < 0.8]).astype(float)
    cost = np.tile([1.0, 10.0], (n, 1))
    noise = rng.random((n, 2))
    ops = fit_operating_points(noise, cost, quality, cost, np.ones(2, dtype=bool))
    # only the two single models are worth serving; the knob picks one by its quality per dollar
    assert sorted(ops.model.tolist()) == [0, 1]
    slope = float(ops.slopes[0])  # quality per dollar of moving from model 0 to model 1
    assert slope == pytest.approx((quality[:, 1].mean() - quality[:, 0].mean()) / 9.0)
    assert ops.select(slope * 0.5) == (None, 1)
    assert ops.select(slope * 2.0) == (None, 0)


def test_operating_points_keep_an_informative_router() -> None:
    n = 400
    easy = np.arange(n) % 2 == 0
    quality = np.column_stack([easy, np.ones(n)]).astype(float)
    cost = np.tile([1.0, 10.0], (n, 1))
    ops = fit_operating_points(quality * 0.8 + 0.1, cost, quality, cost, np.ones(2, dtype=bool))
    # the router (easy -> cheap, hard -> strong) is on the hull between the two single models
    routed = [i for i, k in enumerate(ops.model) if k < 0]
    assert routed, ops
    i = routed[0]
    # vertex i serves knobs in [slopes[i], slopes[i - 1]); the dearest vertex serves [0, slopes[-1])
    low = float(ops.slopes[i]) if i < len(ops.slopes) else 0.0
    knob, model = ops.select((low + float(ops.slopes[i - 1])) / 2)
    assert model is None and knob is not None
    # it reaches the strong model's quality for far less: the strong model alone is not worth serving
    assert ops.model[-1] < 0


def test_choose_serves_the_single_model_operating_point(tmp_path: Path) -> None:
    matrix = to_matrix([parse_record(r) for r in records(60, seed=5)])
    router = train(matrix, TrainConfig())
    # force "every prompt to the strong model" for knobs up to 100/USD, the router above
    strong = router.models.index(STRONG)
    router.operating = OperatingPoints(
        slopes=np.array([100.0]), router_lambda=np.array([50.0, np.nan]), model=np.array([-1, strong])
    )
    router.save(tmp_path / "r.npz")
    loaded = LearnedRouter.load(tmp_path / "r.npz")
    easy = prompt("easy", random.Random(1))
    d = loaded.choose(easy, [CHEAP, STRONG], quality_per_dollar=10.0)
    assert d.model == STRONG and "every prompt" in d.reason
    d = loaded.choose(easy, [CHEAP, STRONG], quality_per_dollar=1000.0)
    assert d.model == CHEAP and "50/USD" in d.reason
    # the batch path used by `router eval` serves the same
    q, _ = loaded.predict([easy])
    c = loaded.predict_cost([easy])
    assert loaded.route_batch(q, c, 10.0).tolist() == [strong]
    assert loaded.route_batch(q, c, 1000.0).tolist() == [router.models.index(CHEAP)]


def test_merged_tree_walk_matches_each_ensemble() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((300, 4))
    ensembles = []
    for depth_leaves, target in ((3, x[:, 0] > 0.5), (15, np.sin(5 * x[:, 1]) + x[:, 2]), (7, x[:, 3] ** 2)):
        est = HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=depth_leaves, early_stopping=False)
        ensembles.append(TreeEnsemble.from_sklearn(est.fit(x, target.astype(float))))
    probe = rng.random((25, 4))
    merged = MergedEnsembles.merge(ensembles).predict(probe)
    for j, ens in enumerate(ensembles):
        np.testing.assert_allclose(merged[:, j], ens.predict(probe), rtol=1e-12, atol=1e-12)
