"""The metric, defined once: RMSLE in seconds space from log1p predictions."""

from __future__ import annotations

from typing import Any

import numpy as np


def rmsle(log_pred: Any, log_true: Any) -> float:
    """RMSLE from log1p predictions and log1p labels, as training reports it: predictions clipped at 0
    (durations are not negative), unlabeled (non-finite) rows skipped."""
    y = np.asarray(log_true, np.float64)
    keep = np.isfinite(y)
    err = np.maximum(np.asarray(log_pred, np.float64)[keep], 0.0) - y[keep]
    return float(np.sqrt(np.mean(err**2)))
