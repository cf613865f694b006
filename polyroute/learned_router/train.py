"""Training the learned router from routing records.

Stage 1: ridge regression of each model's quality on the prompt's TF-IDF (hashed n-grams); its
regularisation is picked by inner K-fold cross-validation on the training records, and the inner
out-of-fold predictions feed stage 2 (stacking without leakage).
Stage 2 (with enough records): boosted trees per model (and one for the strong-weak gap with two models)
on the prompt's dense shape statistics plus the stage-1 predictions. Tree size is picked, and stage 2 is
kept at all, only if it beats stage 1 on an inner hold-out split of the training records.
Nothing of the evaluation data is used; ``task`` is never a feature.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from polyroute.learned_router.features import (
    DEFAULT_BITS,
    HashedCounts,
    TextFeaturizer,
    dense_matrix,
    hash_counts,
)
from polyroute.learned_router.pricing import estimate_tokens
from polyroute.learned_router.records import Matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.trees import TreeEnsemble


@dataclass(frozen=True)
class TrainConfig:
    bits: int = DEFAULT_BITS
    alphas: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    inner_folds: int = 3
    stage2_min_records: int = 200
    stage2_leaf_options: tuple[int, ...] = (7, 15)
    stage2_holdout: float = 0.2
    char_weight: float = 1.0
    quality_per_dollar: float = 0.0
    seed: int = 0


def _ridge(alpha: float) -> Ridge:
    return Ridge(alpha=alpha, solver="sparse_cg", tol=1e-4)


def _selection_error(pred: np.ndarray, quality: np.ndarray, strong: int) -> float:
    """What alpha/tree choices minimise: the gap's error with two models, else mean per-model error."""
    if quality.shape[1] == 2:
        gap_true = quality[:, strong] - quality[:, 1 - strong]
        gap_pred = pred[:, strong] - pred[:, 1 - strong]
        return float(np.mean((gap_true - gap_pred) ** 2))
    return float(np.mean((quality - pred) ** 2))


def _fit_cost_model(matrix: Matrix) -> np.ndarray:
    """Per model, USD ~ a + b * estimated prompt tokens, a, b >= 0."""
    tokens = np.array([estimate_tokens(p) for p in matrix.prompts], dtype=np.float64)
    out = np.zeros((len(matrix.models), 2))
    design = np.column_stack([np.ones_like(tokens), tokens])
    for j in range(len(matrix.models)):
        c = matrix.cost[:, j]
        (a, b), *_ = np.linalg.lstsq(design, c, rcond=None)
        if b < 0:
            a, b = float(c.mean()), 0.0
        if a < 0:
            a, b = 0.0, float(c @ tokens / max(tokens @ tokens, 1e-12))
        out[j] = (a, b)
    return out


def _hgb(leaves: int, n: int, max_iter: int, early_stop: bool, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=0.05,
        max_iter=max_iter,
        max_leaf_nodes=leaves,
        min_samples_leaf=max(20, n // 200),
        l2_regularization=1.0,
        early_stopping=early_stop,
        validation_fraction=0.15 if early_stop else None,
        n_iter_no_change=25,
        random_state=seed,
    )


def train(
    matrix: Matrix,
    config: TrainConfig | None = None,
    counts: HashedCounts | None = None,
    dense: np.ndarray | None = None,
) -> LearnedRouter:
    """Fit a router on ``matrix``. ``counts``/``dense`` may be passed precomputed (rows = records)."""
    cfg = config or TrainConfig()
    started = time.perf_counter()
    n, m = matrix.quality.shape
    if n < 2:
        raise ValueError("need at least two records")
    if counts is None:
        counts = hash_counts(matrix.prompts, cfg.bits)
    if dense is None:
        dense = dense_matrix(matrix.prompts)
    quality = matrix.quality
    mean_quality = quality.mean(axis=0)
    strong = int(np.argmax(mean_quality))

    featurizer = TextFeaturizer.fit(counts, cfg.bits, min_df=2 if n >= 100 else 1, char_weight=cfg.char_weight)
    x = featurizer.transform_counts(counts)

    # ---- stage 1: alpha by inner CV, out-of-fold predictions for stage 2
    folds = min(cfg.inner_folds, n)
    oof_by_alpha: dict[float, np.ndarray] = {}
    if folds >= 2:
        splits = list(KFold(folds, shuffle=True, random_state=cfg.seed).split(np.arange(n)))
        for alpha in cfg.alphas:
            oof = np.zeros_like(quality)
            for tr, te in splits:
                oof[te] = _ridge(alpha).fit(x[tr], quality[tr]).predict(x[te])
            oof_by_alpha[alpha] = oof
        alpha = min(cfg.alphas, key=lambda a: _selection_error(oof_by_alpha[a], quality, strong))
    else:
        alpha = cfg.alphas[len(cfg.alphas) // 2]
    ridge = _ridge(alpha).fit(x, quality)
    coef = np.asarray(ridge.coef_, dtype=np.float32).reshape(m, -1)
    intercept = np.asarray(ridge.intercept_, dtype=np.float64).reshape(m)
    info: dict[str, object] = {
        "records": n,
        "alpha": alpha,
        "stage1_cv_error": {str(a): _selection_error(o, quality, strong) for a, o in oof_by_alpha.items()},
    }

    # ---- stage 2: trees on dense statistics + stage-1 out-of-fold predictions
    stage2: list[TreeEnsemble] | None = None
    gap_model: TreeEnsemble | None = None
    if n >= cfg.stage2_min_records and oof_by_alpha:
        oof = oof_by_alpha[alpha]
        z = np.hstack([dense, oof])
        targets = [quality[:, j] for j in range(m)]
        stage1_targets = [oof[:, j] for j in range(m)]
        if m == 2:
            targets.append(quality[:, strong] - quality[:, 1 - strong])
            stage1_targets.append(oof[:, strong] - oof[:, 1 - strong])
        rng = np.random.default_rng(cfg.seed)
        perm = rng.permutation(n)
        n_hold = max(1, int(n * cfg.stage2_holdout))
        hold, fit_idx = perm[:n_hold], perm[n_hold:]
        chosen: list[tuple[int, int]] = []
        err_stage2 = 0.0
        err_stage1 = 0.0
        for y, y1 in zip(targets, stage1_targets, strict=True):
            best: tuple[float, int, int] | None = None
            for leaves in cfg.stage2_leaf_options:
                est = _hgb(leaves, len(fit_idx), 600, True, cfg.seed).fit(z[fit_idx], y[fit_idx])
                err = float(np.mean((est.predict(z[hold]) - y[hold]) ** 2))
                if best is None or err < best[0]:
                    best = (err, leaves, int(est.n_iter_))
            assert best is not None
            err_stage2 += best[0]
            err_stage1 += float(np.mean((y1[hold] - y[hold]) ** 2))
            chosen.append((best[1], best[2]))
        info["stage2_holdout_error"] = err_stage2
        info["stage1_holdout_error"] = err_stage1
        if err_stage2 < err_stage1:
            fitted = [
                TreeEnsemble.from_sklearn(
                    _hgb(leaves, n, max(1, int(iters * 1.1)), False, cfg.seed).fit(z, y)
                )
                for (leaves, iters), y in zip(chosen, targets, strict=True)
            ]
            stage2 = fitted[:m]
            gap_model = fitted[m] if m == 2 else None
            info["stage2"] = [{"max_leaf_nodes": lv, "iterations": it} for lv, it in chosen]

    router = LearnedRouter(
        models=list(matrix.models),
        featurizer=featurizer,
        coef=coef,
        intercept=intercept,
        stage2=stage2,
        gap_model=gap_model,
        cost_coef=_fit_cost_model(matrix),
        cost_source=matrix.cost_source,
        mean_quality=mean_quality,
        mean_cost=matrix.cost.mean(axis=0),
        strong_share_thresholds=np.zeros(101),
        default_quality_per_dollar=cfg.quality_per_dollar,
        info=info,
    )
    # calibrate the two-candidate threshold knob on the training prompts' score distribution
    quality_hat, gap_hat = router.predict_from(counts, dense)
    if gap_hat is not None:
        lead = gap_hat
    else:
        order = np.argsort(-mean_quality)
        lead = quality_hat[:, order[0]] - quality_hat[:, order[1:]].max(axis=1)
    router.strong_share_thresholds = np.quantile(lead, np.linspace(0, 1, 101))
    info["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    info["train_seconds"] = round(time.perf_counter() - started, 3)
    return router
