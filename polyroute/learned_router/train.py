"""Training the learned router from routing records.

Stage 1: ridge regression of each model's quality on the prompt's TF-IDF (hashed n-grams); its
regularisation is picked by inner K-fold cross-validation on the training records, and the inner
out-of-fold predictions feed stage 2 (stacking without leakage).
Stage 2 (with enough records): boosted trees per model (and one for the strong-weak gap with two models)
on the prompt's dense shape statistics plus the stage-1 predictions. Tree size is picked, and stage 2 is
kept at all, only if it beats stage 1 on an inner hold-out split of the training records.
With enough distinct ``task`` labels the hold-out takes whole tasks, so stage 2 and the weight of a
length prior are chosen for topics the router has not seen. Last, the quality-per-dollar knob is mapped
to operating points (operating.py) on the held-out predictions.
Nothing of the evaluation data is used; ``task`` is never a feature.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
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
from polyroute.learned_router.metrics import (
    aiq,
    apgr,
    lambda_grid,
    routellm_curve,
    sweep_utility,
    upper_hull,
)
from polyroute.learned_router.operating import fit_operating_points
from polyroute.learned_router.pricing import estimate_tokens
from polyroute.learned_router.records import Matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.stage2 import Stage2, fit_calibration, fit_length_prior
from polyroute.learned_router.trees import TreeEnsemble


@dataclass(frozen=True)
class TrainConfig:
    bits: int = DEFAULT_BITS
    alphas: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    inner_folds: int = 3
    calibrate_min_records: int = 30
    # stage-2 kinds to choose from below / from gbm_min_records up; text-only ``linear`` is left out of
    # the big-data set because it alone ignores the dense statistics that carry over to unseen topics
    small_kinds: tuple[str, ...] = ("linear", "calibrated")
    big_kinds: tuple[str, ...] = ("calibrated", "gbm", "blend")
    gbm_min_records: int = 2000
    stage2_leaf_options: tuple[int, ...] = (7, 15)
    stage2_holdout: float = 0.2
    char_weight: float = 1.0
    quality_per_dollar: float = 0.0
    # with enough distinct ``task`` labels, the stage-2 hold-out takes whole tasks (topics stage 1 never
    # saw): stage 2 is then chosen, and the length prior weighed, for prompts on unfamiliar topics
    holdout_by_task: bool = True
    # weights tried for the length prior added to stage 2 (chosen on a task-disjoint hold-out only)
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    # map the knob to operating points chosen on held-out records (operating.py); off: the router as is
    operating_points: bool = True
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


def _routing_score(
    pred: np.ndarray, quality: np.ndarray, cost: np.ndarray, strong: int, eligible: np.ndarray
) -> float:
    """What stage-2 selection maximises: APGR with two models, else AIQ of the quality-per-dollar sweep
    (predicted cost = the model's mean training cost, true cost and quality of the records)."""
    if quality.shape[1] == 2:
        gap = pred[:, strong] - pred[:, 1 - strong]
        return apgr(routellm_curve(gap, quality[:, strong], quality[:, 1 - strong]))
    mean_cost = cost.mean(axis=0)
    masked = np.where(eligible[None, :], pred, -np.inf)
    pts = sweep_utility(masked, np.tile(mean_cost, (len(pred), 1)), lambda_grid(cost, 41), quality, cost)
    return aiq(upper_hull(pts[:, 0], pts[:, 1]), float(mean_cost.min()), float(mean_cost.max()))


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
            a, b = 0.0, float(c @ tokens) / max(float(tokens @ tokens), 1e-12)
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


def _fit_gbm(
    dense: np.ndarray,
    s1: np.ndarray,
    quality: np.ndarray,
    strong: int,
    cfg: TrainConfig,
    holdout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    plan: list[tuple[int, int]] | None = None,
) -> tuple[list[TreeEnsemble], TreeEnsemble | None, list[tuple[int, int]]]:
    """Trees per model (+ gap with two models). With ``holdout`` pick tree size and length by it;
    with ``plan`` refit those sizes and lengths."""
    n, m = quality.shape
    z = np.hstack([dense, s1])
    targets = [quality[:, j] for j in range(m)]
    if m == 2:
        targets.append(quality[:, strong] - quality[:, 1 - strong])
    fitted: list[TreeEnsemble] = []
    used: list[tuple[int, int]] = []
    for t, y in enumerate(targets):
        if plan is not None:
            leaves, iters = plan[t]
            est = _hgb(leaves, n, max(1, int(iters * 1.1)), False, cfg.seed).fit(z, y)
        else:
            assert holdout is not None
            hd, hs, hq = holdout
            hz = np.hstack([hd, hs])
            hy = hq[:, t] if t < m else hq[:, strong] - hq[:, 1 - strong]
            best: tuple[float, int, HistGradientBoostingRegressor] | None = None
            for lv in cfg.stage2_leaf_options:
                cand = _hgb(lv, n, 600, True, cfg.seed).fit(z, y)
                err = float(np.mean((cand.predict(hz) - hy) ** 2))
                if best is None or err < best[0]:
                    best = (err, lv, cand)
            assert best is not None
            leaves, est = best[1], best[2]
            iters = int(est.n_iter_)
        used.append((leaves, iters))
        fitted.append(TreeEnsemble.from_sklearn(est))
    return fitted[:m], (fitted[m] if m == 2 else None), used


def _eligible_mask(matrix: Matrix) -> np.ndarray:
    """Models on the upper hull of training (mean cost, mean quality); all when costs are equal."""
    mean_cost, mean_quality = matrix.cost.mean(axis=0), matrix.quality.mean(axis=0)
    if matrix.cost_source == "equal" or len(matrix.models) <= 2:
        return np.ones(len(matrix.models), dtype=bool)
    hull = upper_hull(mean_cost, mean_quality)
    return np.array(
        [bool(np.any((np.abs(hull[:, 0] - c) <= 1e-15) & (np.abs(hull[:, 1] - q) <= 1e-12)))
         for c, q in zip(mean_cost, mean_quality, strict=True)]
    )


def _fit_stage1(x: sp.csr_matrix, y1: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge weights (features, targets) as float32 and intercepts, one alpha per target."""
    coef = np.zeros((x.shape[1], y1.shape[1]), dtype=np.float32)
    intercept = np.zeros(y1.shape[1])
    for alpha in np.unique(alphas):
        cols = np.flatnonzero(alphas == alpha)
        r = _ridge(float(alpha)).fit(x, y1[:, cols])
        coef[:, cols] = np.asarray(r.coef_, dtype=np.float32).reshape(len(cols), -1).T
        intercept[cols] = np.asarray(r.intercept_, dtype=np.float64).reshape(len(cols))
    return coef, intercept


def _holdout_groups(matrix: Matrix, cfg: TrainConfig) -> np.ndarray | None:
    """Task labels for a task-disjoint hold-out, or None (not asked for, or too few distinct tasks)."""
    if not cfg.holdout_by_task:
        return None
    tasks = np.array(matrix.tasks)
    return tasks if len(set(matrix.tasks)) >= 2 * cfg.inner_folds and all(matrix.tasks) else None


def _holdout(n: int, share: float, groups: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hold-out, fit) indices; with groups, whole groups go to the hold-out until it has ``share``."""
    rng = np.random.default_rng(seed)
    n_hold = max(1, int(n * share))
    if groups is None:
        perm = rng.permutation(n)
        return perm[:n_hold], perm[n_hold:]
    names = rng.permutation(np.unique(groups))
    sizes = np.array([np.sum(groups == g) for g in names])
    chosen = names[: int(np.searchsorted(np.cumsum(sizes), n_hold)) + 1]
    mask = np.isin(groups, chosen)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


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
    # stage-1 targets: each model's quality, then the prompt's difficulty (mean quality over models)
    y1 = np.column_stack([quality, quality.mean(axis=1)])

    # ---- stage 1: alpha per target by inner CV; out-of-fold predictions feed stage 2
    folds = min(cfg.inner_folds, n)
    alphas = np.full(m + 1, cfg.alphas[len(cfg.alphas) // 2])
    oof: np.ndarray | None = None
    cv_error: dict[str, list[float]] = {}
    groups = _holdout_groups(matrix, cfg)
    if folds >= 2:
        splits = list(KFold(folds, shuffle=True, random_state=cfg.seed).split(np.arange(n)))
        oof_by_alpha: list[np.ndarray] = []
        for alpha in cfg.alphas:
            pred = np.zeros_like(y1)
            for tr, te in splits:
                pred[te] = _ridge(alpha).fit(x[tr], y1[tr]).predict(x[te])
            oof_by_alpha.append(pred)
            cv_error[str(alpha)] = [round(float(e), 6) for e in np.mean((pred - y1) ** 2, axis=0)]
        errors = np.array([np.mean((p - y1) ** 2, axis=0) for p in oof_by_alpha])  # (alphas, m + 1)
        best = np.argmin(errors, axis=0)
        alphas = np.array([cfg.alphas[i] for i in best])
        oof = np.column_stack([oof_by_alpha[best[j]][:, j] for j in range(m + 1)])
    coef, intercept = _fit_stage1(x, y1, alphas)
    info: dict[str, object] = {
        "records": n,
        "alphas": [float(a) for a in alphas],
        "stage1_cv_error": cv_error,
    }

    # ---- stage 2: pick a kind by the routing figure on held-out training records
    stage2 = Stage2("linear")
    # records' indices and stage-2 predictions from models that did not learn from those records
    held: tuple[np.ndarray, np.ndarray] | None = None
    eligible = _eligible_mask(matrix)
    big = n >= cfg.gbm_min_records
    kinds = [k for k in (cfg.big_kinds if big else cfg.small_kinds) if big or k in ("linear", "calibrated")]
    kinds = kinds or ["linear"]
    if oof is not None and n >= cfg.calibrate_min_records:
        gbm_plan: list[tuple[int, int]] = []
        need_trees = "gbm" in kinds or "blend" in kinds
        prior = fit_length_prior(dense, quality)
        prior_weight = 0.0
        if big:
            # big data: one hold-out split is precise enough, and trees are too slow to cross-validate;
            # it also fixes the trees' size and length for the final fit
            hold, fit_idx = _holdout(n, cfg.stage2_holdout, groups, cfg.seed)
            if groups is None:
                s1_hold = oof[hold]
            else:
                # the hold-out's topics must be new to stage 1 too, as a new topic is in service
                h_coef, h_intercept = _fit_stage1(x[fit_idx], y1[fit_idx], alphas)
                s1_hold = np.asarray(x[hold] @ h_coef) + h_intercept
            calib = fit_calibration(oof[fit_idx], dense[fit_idx], quality[fit_idx])
            trees: list[TreeEnsemble] | None = None
            gap_trees: TreeEnsemble | None = None
            if need_trees:
                trees, gap_trees, gbm_plan = _fit_gbm(dense[fit_idx], oof[fit_idx], quality[fit_idx], strong,
                                                      cfg, holdout=(dense[hold], s1_hold, quality[hold]))
            hold_prior = fit_length_prior(dense[fit_idx], quality[fit_idx])

            def hold_score(kind: str, weight: float) -> float:
                s2 = Stage2(kind, calib=calib, trees=trees, gap_trees=gap_trees, prior=hold_prior,
                            prior_weight=weight)
                pred = s2.predict(s1_hold, dense[hold], strong)[0]
                return _routing_score(pred, quality[hold], matrix.cost[hold], strong, eligible)

            scores = {k: hold_score(k, 0.0) for k in kinds} if len(kinds) > 1 else {kinds[0]: float("nan")}
            if groups is not None:
                # how far to lean on the length prior where the text is unfamiliar: judged on topics
                # stage 1 never saw (text predictions shrink there, so the prior weighs more)
                best_kind = max(scores, key=lambda k: scores[k])
                by_weight = {w: hold_score(best_kind, w) for w in cfg.prior_weights}
                prior_weight = max(by_weight, key=lambda w: (by_weight[w], -w))
                info["prior_inner_score"] = {str(w): round(v, 6) for w, v in by_weight.items()}
        else:
            # small data: cross-validate the (cheap) calibration over the out-of-fold predictions
            preds = {"linear": Stage2("linear").predict(oof, dense, strong)[0]}
            if "calibrated" in kinds and len(kinds) > 1:
                calibrated = np.zeros_like(quality)
                for tr, te in KFold(min(5, n), shuffle=True, random_state=cfg.seed + 1).split(np.arange(n)):
                    calib = fit_calibration(oof[tr], dense[tr], quality[tr])
                    calibrated[te] = Stage2("calibrated", calib=calib).predict(oof[te], dense[te], strong)[0]
                preds["calibrated"] = calibrated
            scores = (
                {k: _routing_score(preds[k], quality, matrix.cost, strong, eligible) for k in kinds}
                if len(kinds) > 1 else {kinds[0]: float("nan")}
            )
        kind = max(scores, key=lambda k: scores[k])
        info["stage2_inner_score"] = {k: round(v, 6) for k, v in scores.items()}
        if big:
            held = (hold, Stage2(kind, calib=calib, trees=trees, gap_trees=gap_trees, prior=hold_prior,
                                 prior_weight=prior_weight).predict(s1_hold, dense[hold], strong)[0])
        elif kind in preds:
            held = (np.arange(n), preds[kind])
        final_calib = fit_calibration(oof, dense, quality) if kind in ("calibrated", "blend") else None
        final_trees: list[TreeEnsemble] | None = None
        final_gap: TreeEnsemble | None = None
        if kind in ("gbm", "blend"):
            final_trees, final_gap, _ = _fit_gbm(dense, oof, quality, strong, cfg, plan=gbm_plan)
            info["gbm"] = [{"max_leaf_nodes": lv, "iterations": it} for lv, it in gbm_plan]
        stage2 = Stage2(kind, calib=final_calib, trees=final_trees, gap_trees=final_gap, prior=prior,
                        prior_weight=prior_weight)
    info["stage2"] = stage2.kind
    info["prior_weight"] = stage2.prior_weight

    router = LearnedRouter(
        models=list(matrix.models),
        featurizer=featurizer,
        coef=coef,
        intercept=intercept,
        stage2=stage2,
        cost_coef=_fit_cost_model(matrix),
        cost_source=matrix.cost_source,
        mean_quality=mean_quality,
        mean_cost=matrix.cost.mean(axis=0),
        strong_share_thresholds=np.zeros(101),
        default_quality_per_dollar=cfg.quality_per_dollar,
        info=info,
    )
    if held is not None and cfg.operating_points:
        idx, pred = held
        router.operating = fit_operating_points(
            pred, router.predict_cost([matrix.prompts[i] for i in idx]), quality[idx], matrix.cost[idx], eligible
        )
        info["operating_points"] = [
            f"every prompt to {matrix.models[k]}" if k >= 0 else f"router at {lam:.4g}/USD"
            for k, lam in zip(router.operating.model, router.operating.router_lambda, strict=True)
        ]
    # calibrate the two-candidate threshold knob on the training prompts' score distribution
    router.strong_share_thresholds = np.quantile(router.strong_scores_from(counts, dense), np.linspace(0, 1, 101))
    info["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    info["train_seconds"] = round(time.perf_counter() - started, 3)
    return router
