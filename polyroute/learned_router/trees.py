"""Gradient-boosted trees as plain arrays, so a router artifact needs no pickle.

A fitted ``HistGradientBoostingRegressor`` (numeric features, no missing values at prediction time)
is flattened into node arrays; prediction walks every tree at once with numpy, one level per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor


@dataclass
class TreeEnsemble:
    baseline: float
    roots: np.ndarray  # (trees,) int32, index of each tree's root in the node arrays
    feature: np.ndarray  # (nodes,) int32
    threshold: np.ndarray  # (nodes,) float64, go left when x <= threshold
    left: np.ndarray  # (nodes,) int32, global index
    right: np.ndarray  # (nodes,) int32, global index
    is_leaf: np.ndarray  # (nodes,) bool
    value: np.ndarray  # (nodes,) float64, leaf contribution
    max_depth: int

    @classmethod
    def from_sklearn(cls, est: HistGradientBoostingRegressor) -> TreeEnsemble:
        features: list[np.ndarray] = []
        thresholds: list[np.ndarray] = []
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        leaves: list[np.ndarray] = []
        values: list[np.ndarray] = []
        roots: list[int] = []
        offset = 0
        depth = 0
        for per_iter in est._predictors:
            nodes = per_iter[0].nodes
            roots.append(offset)
            features.append(nodes["feature_idx"].astype(np.int32))
            thresholds.append(nodes["num_threshold"].astype(np.float64))
            lefts.append(nodes["left"].astype(np.int32) + offset)
            rights.append(nodes["right"].astype(np.int32) + offset)
            leaves.append(nodes["is_leaf"].astype(bool))
            values.append(np.where(nodes["is_leaf"].astype(bool), nodes["value"], 0.0))
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        empty_i = np.zeros(0, dtype=np.int32)
        return cls(
            baseline=float(np.asarray(est._baseline_prediction).ravel()[0]),
            roots=np.asarray(roots, dtype=np.int32),
            feature=np.concatenate(features) if features else empty_i,
            threshold=np.concatenate(thresholds) if thresholds else np.zeros(0),
            left=np.concatenate(lefts) if lefts else empty_i,
            right=np.concatenate(rights) if rights else empty_i,
            is_leaf=np.concatenate(leaves) if leaves else np.zeros(0, dtype=bool),
            value=np.concatenate(values) if values else np.zeros(0),
            max_depth=depth,
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for an (n, features) matrix."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if self.roots.size == 0:
            return np.full(x.shape[0], self.baseline)
        rows = np.arange(x.shape[0])[:, None]
        idx = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        for _ in range(self.max_depth):
            leaf = self.is_leaf[idx]
            if leaf.all():
                break
            go_left = x[rows, self.feature[idx]] <= self.threshold[idx]
            nxt = np.where(go_left, self.left[idx], self.right[idx])
            idx = np.where(leaf, idx, nxt)
        return self.baseline + self.value[idx].sum(axis=1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.meta": np.array([self.baseline, float(self.max_depth)]),
            f"{prefix}.roots": self.roots,
            f"{prefix}.feature": self.feature.astype(np.int16),
            f"{prefix}.threshold": self.threshold,
            f"{prefix}.left": self.left,
            f"{prefix}.right": self.right,
            f"{prefix}.is_leaf": self.is_leaf,
            f"{prefix}.value": self.value,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> TreeEnsemble:
        meta = arrays[f"{prefix}.meta"]
        return cls(
            baseline=float(meta[0]),
            roots=arrays[f"{prefix}.roots"].astype(np.int32),
            feature=arrays[f"{prefix}.feature"].astype(np.int32),
            threshold=arrays[f"{prefix}.threshold"].astype(np.float64),
            left=arrays[f"{prefix}.left"].astype(np.int32),
            right=arrays[f"{prefix}.right"].astype(np.int32),
            is_leaf=arrays[f"{prefix}.is_leaf"].astype(bool),
            value=arrays[f"{prefix}.value"].astype(np.float64),
            max_depth=int(meta[1]),
        )


@dataclass
class MergedEnsembles:
    """Several ensembles over the same inputs walked together, one numpy step per tree level.

    Leaves point to themselves (threshold +inf), so the walk needs no leaf test: after ``max_depth``
    steps every tree sits on its leaf. One walk for all of stage 2's ensembles is what keeps a routing
    decision's trees at a few tens of microseconds.
    """

    roots: np.ndarray  # (trees,) int64
    starts: np.ndarray  # (ensembles,) index of each ensemble's first tree (trees are grouped by ensemble)
    baselines: np.ndarray  # (ensembles,)
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    max_depth: int

    @classmethod
    def merge(cls, ensembles: list[TreeEnsemble]) -> MergedEnsembles:
        """Every ensemble needs at least one tree (``reduceat`` needs non-empty groups)."""
        roots, features, thresholds, lefts, rights, values, starts = [], [], [], [], [], [], []
        offset = n_trees = 0
        for ens in ensembles:
            starts.append(n_trees)
            nodes = np.arange(len(ens.feature), dtype=np.int64) + offset
            leaf = ens.is_leaf
            roots.append(ens.roots.astype(np.int64) + offset)
            features.append(np.where(leaf, 0, ens.feature).astype(np.int64))
            thresholds.append(np.where(leaf, np.inf, ens.threshold))
            lefts.append(np.where(leaf, nodes, ens.left.astype(np.int64) + offset))
            rights.append(np.where(leaf, nodes, ens.right.astype(np.int64) + offset))
            values.append(ens.value)
            offset += len(ens.feature)
            n_trees += len(ens.roots)
        return cls(
            roots=np.concatenate(roots),
            starts=np.asarray(starts, dtype=np.int64),
            baselines=np.asarray([e.baseline for e in ensembles]),
            feature=np.concatenate(features),
            threshold=np.concatenate(thresholds),
            left=np.concatenate(lefts),
            right=np.concatenate(rights),
            value=np.concatenate(values),
            max_depth=max(e.max_depth for e in ensembles),
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, ensembles) predictions for an (n, features) matrix."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        rows = np.arange(x.shape[0])[:, None]
        idx = np.broadcast_to(self.roots, (x.shape[0], self.roots.size))
        for _ in range(self.max_depth):
            go_left = x[rows, self.feature[idx]] <= self.threshold[idx]
            idx = np.where(go_left, self.left[idx], self.right[idx])
        return np.add.reduceat(self.value[idx], self.starts, axis=1) + self.baselines
