"""Stage 2: from the stage-1 text predictions (and dense prompt statistics) to per-model quality.

Stage 1 predicts, per prompt, each model's quality and the prompt's *difficulty* (the mean quality over
all models: one target with m times the data, so it is learnt far better from few records). Stage 2 is
one of:

* ``linear``: the stage-1 per-model predictions as they are;
* ``calibrated``: per model, a logistic regression on (predicted difficulty, predicted own quality,
  dense prompt statistics such as length). A few numbers per model; when the prompt carries no signal it
  collapses to the model's mean quality, so the router falls back to the best static choice instead
  of routing on noise;
* ``gbm``: boosted trees per model (and for the strong-weak gap with two models) on the dense prompt
  statistics plus all stage-1 predictions, for large training sets;
* ``blend``: the mean of ``calibrated`` and ``gbm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from polyroute.learned_router.trees import MergedEnsembles, TreeEnsemble

KINDS = ("linear", "calibrated", "gbm", "blend")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def _calibration_inputs(s1: np.ndarray, dense: np.ndarray, j: int) -> np.ndarray:
    m = s1.shape[1] - 1
    return np.column_stack([s1[:, m], s1[:, j], dense])


def fit_calibration(s1: np.ndarray, dense: np.ndarray, quality: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Per model: weights on (predicted difficulty, predicted own quality, dense statistics...), bias.

    ``s1`` is (n, m + 1): m per-model predictions then the difficulty. Quality may be fractional:
    each record counts as a success with weight q and a failure with weight 1 - q.
    """
    n, m = quality.shape
    k = 2 + dense.shape[1]
    out = np.zeros((m, k + 1))
    for j in range(m):
        q = quality[:, j]
        mean = float(np.clip(q.mean(), 1e-4, 1 - 1e-4))
        if q.min() == q.max():
            out[j, k] = float(np.log(mean / (1 - mean)))
            continue
        feats = _calibration_inputs(s1, dense, j)
        mu = feats.mean(axis=0)
        sd = feats.std(axis=0)
        sd[sd < 1e-9] = 1.0
        z = (feats - mu) / sd
        lr = LogisticRegression(C=c, max_iter=300).fit(
            np.vstack([z, z]), np.concatenate([np.ones(n), np.zeros(n)]), sample_weight=np.concatenate([q, 1.0 - q])
        )
        w = lr.coef_[0] / sd
        # the standardisation is folded into the weights so runtime needs no statistics
        out[j, :k] = w
        out[j, k] = float(lr.intercept_[0]) - float(w @ mu)
    return out


def apply_calibration(s1: np.ndarray, dense: np.ndarray, calib: np.ndarray) -> np.ndarray:
    m, k1 = calib.shape
    cols = [_calibration_inputs(s1, dense, j) @ calib[j, : k1 - 1] + calib[j, k1 - 1] for j in range(m)]
    return _sigmoid(np.column_stack(cols))


def fit_length_prior(dense: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Per model (slope, centre): least-squares quality ~ log prompt length, centred on the training mean."""
    log_chars = dense[:, 0]
    centre = float(log_chars.mean())
    var = float(np.var(log_chars))
    slopes = ((log_chars - centre) @ (quality - quality.mean(axis=0))) / (len(log_chars) * var) if var > 0 else (
        np.zeros(quality.shape[1]))
    return np.column_stack([slopes, np.full(quality.shape[1], centre)])


@dataclass
class Stage2:
    kind: str
    calib: np.ndarray | None = None  # (m, 3) for "calibrated"
    trees: list[TreeEnsemble] | None = None  # one per model for "gbm"
    gap_trees: TreeEnsemble | None = None  # "gbm" with two models
    # length prior: prior_weight * slope_j * (log_chars - centre) is added to model j's quality. The text
    # model's predictions shrink towards the mean on unfamiliar topics; a fixed prior then carries more
    # of the decision there, so routing falls back towards "longer prompt -> stronger model"
    prior: np.ndarray | None = None  # (m, 2): slope, centre
    prior_weight: float = 0.0
    _walk: MergedEnsembles | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ensembles = [*(self.trees or []), *([self.gap_trees] if self.gap_trees is not None else [])]
        if ensembles and all(e.roots.size for e in ensembles):
            self._walk = MergedEnsembles.merge(ensembles)

    def predict(self, s1: np.ndarray, dense: np.ndarray, strong: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Quality (n, m) and, for two models, the strong-minus-weak gap."""
        m = s1.shape[1] - 1
        gap: np.ndarray | None = None
        quality = s1[:, :m]
        if self.kind in ("calibrated", "blend"):
            assert self.calib is not None
            quality = apply_calibration(s1, dense, self.calib)
        if self.kind in ("gbm", "blend"):
            assert self.trees is not None
            z = np.hstack([dense, s1])
            if self._walk is not None:
                out = self._walk.predict(z)
            else:
                out = np.column_stack([t.predict(z) for t in [*self.trees, *([self.gap_trees] if self.gap_trees else [])]])
            trees_q = out[:, :m]
            if self.gap_trees is not None:
                gap = out[:, m]
            if self.kind == "blend":
                # average of the two views; with two models the gap is averaged likewise
                if gap is not None:
                    gap = (gap + (quality[:, strong] - quality[:, 1 - strong])) / 2.0
                quality = (quality + trees_q) / 2.0
            else:
                quality = trees_q
        quality = np.clip(quality, 0.0, 1.0)
        shift: np.ndarray | None = None
        if self.prior is not None and self.prior_weight:
            shift = self.prior_weight * self.prior[:, 0][None, :] * (dense[:, :1] - self.prior[:, 1][None, :])
            quality = quality + shift
        if m == 2:
            if gap is None:
                gap = quality[:, strong] - quality[:, 1 - strong]
            elif shift is not None:
                gap = gap + shift[:, strong] - shift[:, 1 - strong]
            # make the per-model figures agree with the gap (their mean kept, their difference = gap)
            mid = quality.mean(axis=1)
            quality = np.empty_like(quality)
            quality[:, strong] = mid + gap / 2.0
            quality[:, 1 - strong] = mid - gap / 2.0
        return quality, gap

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if self.calib is not None:
            arrays["calib"] = self.calib
        for i, t in enumerate(self.trees or []):
            arrays.update(t.to_arrays(f"stage2.{i}"))
        if self.gap_trees is not None:
            arrays.update(self.gap_trees.to_arrays("gap"))
        if self.prior is not None:
            arrays["prior"] = self.prior
            arrays["prior_weight"] = np.array([self.prior_weight])
        return arrays

    @classmethod
    def from_arrays(cls, kind: str, arrays: dict[str, np.ndarray], m: int) -> Stage2:
        if kind not in KINDS:
            raise ValueError(f"unknown stage-2 kind {kind!r}")
        return cls(
            kind=kind,
            calib=arrays.get("calib"),
            trees=[TreeEnsemble.from_arrays(arrays, f"stage2.{i}") for i in range(m)] if kind in ("gbm", "blend") else None,
            gap_trees=TreeEnsemble.from_arrays(arrays, "gap") if "gap.meta" in arrays else None,
            prior=arrays.get("prior"),
            prior_weight=float(arrays["prior_weight"][0]) if "prior_weight" in arrays else 0.0,
        )
