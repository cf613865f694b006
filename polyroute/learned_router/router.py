"""The runtime side of the learned router: load an artifact, score a prompt, choose a model.

Scoring a prompt:
  1. hashed word/char n-gram TF-IDF of the prompt -> ridge regressions for each model's quality and
     for the prompt's difficulty (stage 1);
  2. stage 2 (see stage2.py): the stage-1 outputs as they are, or calibrated per model by a small
     logistic regression, or boosted trees over them plus dense prompt statistics (big training sets);
  3. predicted cost per model from the prompt's estimated token count (a per-model linear fit).

Choosing: ``argmax_m  predicted_quality[m] - quality_per_dollar * predicted_cost_usd[m]``.
``quality_per_dollar`` (lambda) says how much quality one US dollar is worth, quality being the 0..1
score of the records. 0 means price is no object (best predicted quality, cheaper model on ties); as it
grows the router trades quality for savings. Between two models A (dearer) and B it picks A exactly when
``q_A - q_B >= lambda * (c_A - c_B)``, i.e. lambda maps to a threshold on the predicted quality gap,
which ``threshold=`` sets directly (and ``threshold_for_strong_share`` calibrates from training data).

The object is read-only after ``load`` and safe to call from a thread pool.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyroute.learned_router.features import (
    HashedCounts,
    TextFeaturizer,
    dense_features,
    hash_counts,
    hash_one,
)
from polyroute.learned_router.metrics import upper_hull
from polyroute.learned_router.operating import OperatingPoints, route
from polyroute.learned_router.pricing import estimate_tokens
from polyroute.learned_router.stage2 import Stage2

FORMAT = "polyroute-learned-router"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Decision:
    model: str
    scores: dict[str, float]  # predicted quality (0..1) per considered candidate
    reason: str
    costs: dict[str, float] = field(default_factory=dict)  # predicted USD per considered candidate


@dataclass
class LearnedRouter:
    models: list[str]
    featurizer: TextFeaturizer
    coef: np.ndarray  # (n_features, m + 1) float32, C order: per-model quality then difficulty
    intercept: np.ndarray  # (m + 1,)
    stage2: Stage2
    cost_coef: np.ndarray  # (m, 2): usd = a + b * estimated_prompt_tokens
    cost_source: str
    mean_quality: np.ndarray  # (m,) in the training data
    mean_cost: np.ndarray  # (m,) USD, in the training data
    strong_share_thresholds: np.ndarray  # gap thresholds sending 0..100 % of training prompts to strong
    default_quality_per_dollar: float = 0.0
    info: dict[str, object] = field(default_factory=dict)
    # what each knob value serves (operating.py); None: the router at that knob, as trained
    operating: OperatingPoints | None = None
    _eligible_cache: dict[tuple[int, ...], list[int]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ scoring

    @property
    def strong(self) -> str:
        return self.models[int(np.argmax(self.mean_quality))]

    def predict(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted quality (n, m) and, for two-model routers, the predicted strong-weak gap (n,)."""
        counts = hash_counts(prompts, self.featurizer.bits)
        dense = np.vstack([dense_features(p) for p in prompts])
        return self.predict_from(counts, dense)

    def predict_one(self, prompt: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict([prompt])`` without building sparse matrices: the per-request path."""
        idx, val = self.featurizer.weigh_one(hash_one(prompt, self.featurizer.bits))
        s1 = (val @ self.coef[idx] + self.intercept)[None, :]
        return self.stage2.predict(s1, dense_features(prompt)[None, :], int(np.argmax(self.mean_quality)))

    def predict_from(self, counts: HashedCounts, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict`` from precomputed hashed counts and dense features (hashing is stateless)."""
        x = self.featurizer.transform_counts(counts)
        s1 = np.asarray(x @ self.coef) + self.intercept
        return self.stage2.predict(s1, dense, int(np.argmax(self.mean_quality)))

    def predict_cost(self, prompts: list[str]) -> np.ndarray:
        tokens = np.array([estimate_tokens(p) for p in prompts], dtype=np.float64)
        return self.cost_coef[:, 0][None, :] + tokens[:, None] * self.cost_coef[:, 1][None, :]

    def strong_scores(self, prompts: list[str]) -> np.ndarray:
        """Per prompt, how much the strongest model is predicted to beat the next best (RouteLLM score)."""
        counts = hash_counts(prompts, self.featurizer.bits)
        return self.strong_scores_from(counts, np.vstack([dense_features(p) for p in prompts]))

    def strong_scores_from(self, counts: HashedCounts, dense: np.ndarray) -> np.ndarray:
        quality, gap = self.predict_from(counts, dense)
        if gap is not None:
            return gap
        order = np.argsort(-self.mean_quality)
        return quality[:, order[0]] - quality[:, order[1:]].max(axis=1)

    def eligible(self, indices: list[int]) -> list[int]:
        """Of these models, the ones on the upper convex hull of the training (mean cost, mean quality).

        A model below that hull was, on average, beaten by a random mix of cheaper and dearer models;
        routing to it only adds noise from the per-prompt predictions. With equal costs all are kept.
        """
        key = tuple(sorted(indices))
        cached = self._eligible_cache.get(key)
        if cached is not None:
            return cached
        if self.cost_source == "equal" or len(key) <= 2:
            out = list(key)
        else:
            hull = upper_hull(self.mean_cost[list(key)], self.mean_quality[list(key)])
            out = [
                i
                for i in key
                if any(abs(self.mean_cost[i] - c) <= 1e-15 and abs(self.mean_quality[i] - q) <= 1e-12 for c, q in hull)
            ]
        self._eligible_cache[key] = out
        return out

    def eligible_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.models), dtype=bool)
        mask[self.eligible(list(range(len(self.models))))] = True
        return mask

    def policy(self, lam: float) -> tuple[float | None, int | None]:
        """What knob ``lam`` serves with every trained model a candidate: (router knob, None) or
        (None, the one model that takes every prompt)."""
        if self.operating is None:
            return lam, None
        return self.operating.select(lam)

    def route_batch(self, pred_quality: np.ndarray, pred_cost: np.ndarray, lam: float) -> np.ndarray:
        """Model index per prompt that ``choose`` picks at knob ``lam`` with every trained model a candidate."""
        knob, model = self.policy(lam)
        if model is not None:
            return np.full(pred_quality.shape[0], model, dtype=np.int64)
        assert knob is not None
        return route(pred_quality, pred_cost, self.eligible_mask(), knob)

    def threshold_for_strong_share(self, share: float) -> float:
        """Gap threshold that sent ``share`` (0..1) of the training prompts to the stronger model."""
        share = min(max(share, 0.0), 1.0)
        return float(np.interp(1.0 - share, np.linspace(0, 1, len(self.strong_share_thresholds)),
                               self.strong_share_thresholds))

    def choose(
        self,
        prompt: str,
        candidates: list[str],
        quality_per_dollar: float | None = None,
        threshold: float | None = None,
    ) -> Decision:
        """Pick one of ``candidates`` for ``prompt``.

        ``threshold`` (two candidates only) routes to the candidate with the higher training quality when
        its predicted quality lead is >= threshold. Otherwise ``quality_per_dollar`` (default: the value
        stored at training time) trades predicted quality against predicted cost. Candidates the router
        was not trained on are ignored; if none is known, ValueError.
        """
        index = {m: i for i, m in enumerate(self.models)}
        known = [c for c in dict.fromkeys(candidates) if c in index]
        unknown = [c for c in candidates if c not in index]
        if not known:
            raise ValueError(f"none of the candidates {candidates} is known to this router ({self.models})")
        quality, gap = self.predict_one(prompt)
        cost = self.predict_cost([prompt])[0]
        q = quality[0]
        scores = {c: float(q[index[c]]) for c in known}
        costs = {c: float(cost[index[c]]) for c in known}
        note = f"; ignored unknown {unknown}" if unknown else ""
        if len(known) == 1:
            return Decision(known[0], scores, f"only candidate{note}", costs)
        if threshold is not None and len(known) == 2:
            hi, lo = sorted(known, key=lambda c: -self.mean_quality[index[c]])
            lead = float(gap[0]) if gap is not None else scores[hi] - scores[lo]
            model = hi if lead >= threshold else lo
            return Decision(model, scores, f"predicted lead of {hi} {lead:+.3f} vs threshold {threshold:+.3f}{note}", costs)
        lam = self.default_quality_per_dollar if quality_per_dollar is None else float(quality_per_dollar)
        allowed = [self.models[i] for i in self.eligible([index[c] for c in known])]
        knob = lam
        if len(known) == len(self.models):
            # the operating points were chosen with every trained model a candidate
            mapped, single = self.policy(lam)
            if single is not None:
                model = self.models[single]
                return Decision(model, scores, f"knob {lam:g}/USD: {model} for every prompt (beat per-prompt "
                                f"routing there on held-out training records){note}", costs)
            assert mapped is not None
            knob = mapped
        utility = {c: scores[c] - knob * costs[c] for c in allowed}
        # ties go to the cheaper model
        model = max(allowed, key=lambda c: (utility[c], -costs[c]))
        mapped_note = f" (knob {lam:g}/USD)" if knob != lam else ""
        return Decision(
            model,
            scores,
            f"max predicted quality - {knob:g}/USD * predicted cost{mapped_note}: {utility[model]:.4f}{note}",
            costs,
        )

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """One compressed ``.npz``: arrays plus a JSON header; loads without pickle."""
        active = self.featurizer.active_columns().astype(np.int32)
        half = 2**self.featurizer.bits
        arrays: dict[str, np.ndarray] = {
            "active": active,
            "idf": np.concatenate([self.featurizer.word_idf, self.featurizer.char_idf])[active].astype(
                np.float32
            ),
            "coef": self.coef[active].T.astype(np.float16),
            "intercept": self.intercept.astype(np.float64),
            "cost_coef": self.cost_coef.astype(np.float64),
            "mean_quality": self.mean_quality.astype(np.float64),
            "mean_cost": self.mean_cost.astype(np.float64),
            "strong_share_thresholds": self.strong_share_thresholds.astype(np.float64),
        }
        arrays.update(self.stage2.to_arrays())
        if self.operating is not None:
            arrays.update(self.operating.to_arrays())
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "models": self.models,
            "bits": self.featurizer.bits,
            "half": half,
            "char_weight": self.featurizer.char_weight,
            "stage2": self.stage2.kind,
            "cost_source": self.cost_source,
            "default_quality_per_dollar": self.default_quality_per_dollar,
            "info": self.info,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        tmp = Path(f"{path}.tmp{os.getpid()}")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(arrays["header"].tobytes().decode())
        if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} artifact")
        models = list(header["models"])
        bits = int(header["bits"])
        half = 2**bits
        active = arrays["active"].astype(np.int64)
        idf = np.zeros(2 * half, dtype=np.float32)
        idf[active] = arrays["idf"]
        featurizer = TextFeaturizer(bits, idf[:half].copy(), idf[half:].copy(), float(header["char_weight"]))
        coef = np.zeros((2 * half, len(models) + 1), dtype=np.float32)
        coef[active] = arrays["coef"].T.astype(np.float32)
        stage2 = Stage2.from_arrays(str(header["stage2"]), arrays, len(models))
        return cls(
            models=models,
            featurizer=featurizer,
            coef=coef,
            intercept=arrays["intercept"],
            stage2=stage2,
            cost_coef=arrays["cost_coef"],
            cost_source=str(header["cost_source"]),
            mean_quality=arrays["mean_quality"],
            mean_cost=arrays["mean_cost"],
            strong_share_thresholds=arrays["strong_share_thresholds"],
            default_quality_per_dollar=float(header["default_quality_per_dollar"]),
            info=dict(header.get("info") or {}),
            operating=OperatingPoints.from_arrays(arrays),
        )
