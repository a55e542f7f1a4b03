"""Baselines through the same tensor cache, split and metric as the deep models: LightGBM, XGBoost and a
trivial floor (median duration per distance bucket and hour). ``model=lightgbm|xgboost|trivial``.

They are not ``nn.Module``s: :func:`tabxfer.train.run` sees :class:`TreeBaseline` and calls ``fit`` /
``predict`` on the cache's arrays instead of the Lightning loop. Targets are ``log1p(duration)``, so the
squared-error objective is RMSLE directly.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from tabxfer.features.cache import SplitArrays
from tabxfer.features.spec import FeatureSpec


class TreeBaseline:
    """Interface: ``fit(train, val, spec) -> self``, ``predict(split) -> log1p(duration)``."""

    name = "baseline"

    def fit(self, train: SplitArrays, val: SplitArrays, spec: FeatureSpec) -> TreeBaseline:
        raise NotImplementedError

    def predict(self, split: SplitArrays) -> np.ndarray:
        raise NotImplementedError

    def n_params(self) -> int:
        return 0

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f)


def _features(split: SplitArrays) -> np.ndarray:
    return np.concatenate(
        [np.asarray(split.x_num, dtype=np.float32), np.asarray(split.x_cat, dtype=np.float32)], 1
    )


class LightGBM(TreeBaseline):
    """``lightgbm.train`` with early stopping on the validation split; categoricals as categorical."""

    name = "lightgbm"

    def __init__(self, *, num_boost_round: int = 2000, early_stopping_rounds: int = 50, **params: Any):
        self.num_boost_round, self.early_stopping_rounds = num_boost_round, early_stopping_rounds
        self.params = {
            "objective": "regression",
            "learning_rate": 0.1,
            "num_leaves": 255,
            "verbosity": -1,
            **params,
        }
        self.booster: Any = None

    def fit(self, train: SplitArrays, val: SplitArrays, spec: FeatureSpec) -> LightGBM:
        import lightgbm as lgb

        cats = list(range(spec.n_numeric, spec.n_numeric + spec.n_categorical))
        names = [*spec.numeric_names, *spec.categorical_names]
        dtrain = lgb.Dataset(_features(train), train.y, feature_name=names, categorical_feature=cats)
        dval = lgb.Dataset(_features(val), val.y, reference=dtrain)
        self.booster = lgb.train(
            self.params,
            dtrain,
            num_boost_round=self.num_boost_round,
            valid_sets=[dval],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return self

    def predict(self, split: SplitArrays) -> np.ndarray:
        return np.asarray(self.booster.predict(_features(split), num_iteration=self.booster.best_iteration))

    def n_params(self) -> int:
        return int(self.booster.num_trees()) if self.booster is not None else 0


class XGBoost(TreeBaseline):
    """``xgboost.train`` (hist) with early stopping on the validation split."""

    name = "xgboost"

    def __init__(self, *, num_boost_round: int = 2000, early_stopping_rounds: int = 50, **params: Any):
        self.num_boost_round, self.early_stopping_rounds = num_boost_round, early_stopping_rounds
        self.params = {
            "objective": "reg:squarederror",
            "eta": 0.1,
            "max_depth": 8,
            "tree_method": "hist",
            **params,
        }
        self.booster: Any = None

    def fit(self, train: SplitArrays, val: SplitArrays, spec: FeatureSpec) -> XGBoost:
        import xgboost as xgb

        dtrain = xgb.DMatrix(_features(train), label=train.y)
        dval = xgb.DMatrix(_features(val), label=val.y)
        self.booster = xgb.train(
            self.params,
            dtrain,
            num_boost_round=self.num_boost_round,
            evals=[(dval, "val")],
            early_stopping_rounds=self.early_stopping_rounds,
            verbose_eval=False,
        )
        return self

    def predict(self, split: SplitArrays) -> np.ndarray:
        import xgboost as xgb

        it = (0, self.booster.best_iteration + 1)
        return np.asarray(self.booster.predict(xgb.DMatrix(_features(split)), iteration_range=it))

    def n_params(self) -> int:
        return int(self.booster.num_boosted_rounds()) if self.booster is not None else 0


class Trivial(TreeBaseline):
    """The floor: the median log-duration of training trips in the same distance bucket and hour.

    Distance is recovered from the spec's ``dist_km`` scaler; buckets are training-distance quantiles.
    """

    name = "trivial"

    def __init__(self, *, n_buckets: int = 20):
        self.n_buckets = n_buckets
        self.edges: np.ndarray = np.zeros(0)
        self.table: np.ndarray = np.zeros(0)
        self.fallback = 0.0

    def _keys(self, split: SplitArrays) -> np.ndarray:
        d = np.asarray(split.x_num[:, self.dist_col], dtype=np.float64)
        b = np.searchsorted(self.edges, d)
        h = np.asarray(split.x_cat[:, self.hour_col], dtype=np.int64)  # 0..24 (0 = unknown)
        return b * 25 + h

    def fit(self, train: SplitArrays, val: SplitArrays, spec: FeatureSpec) -> Trivial:
        try:
            self.dist_col = spec.numeric_names.index("dist_km")
            self.hour_col = spec.categorical_names.index("hour")
        except ValueError as e:
            raise ValueError("the trivial baseline needs the dist_km and hour features") from e
        d = np.asarray(train.x_num[:, self.dist_col], dtype=np.float64)
        self.edges = np.quantile(d, np.linspace(0, 1, self.n_buckets + 1)[1:-1])
        keys, y = self._keys(train), np.asarray(train.y, dtype=np.float64)
        self.fallback = float(np.median(y))
        self.table = np.full((self.n_buckets + 1) * 25, self.fallback)
        order = np.argsort(keys, kind="stable")
        k, y = keys[order], y[order]
        uniq, start = np.unique(k, return_index=True)
        for u, lo, hi in zip(uniq, start, [*start[1:], len(k)], strict=True):
            self.table[u] = np.median(y[lo:hi])
        return self

    def predict(self, split: SplitArrays) -> np.ndarray:
        return self.table[self._keys(split)]

    def n_params(self) -> int:
        return int(self.table.size)
