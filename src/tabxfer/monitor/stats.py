"""Distribution-shift statistics: PSI on reference-quantile bins or over categories, and two-sample KS.

**PSI** (population stability index) of a new sample against a reference, over the same bins::

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)      p = reference shares, q = new shares

It is the symmetric KL divergence of the two binned distributions. The usual reading (Siddiqi, *Credit
Risk Scorecards*, 2006): below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one. A share
below ``eps`` is raised to ``eps`` (no renormalisation), so a bin that one side lacks gives a large but
finite term instead of an infinite one; ``eps = 1e-4`` caps such a term at about ``share * 9.2``.

**Numeric bins** are cut at the reference's deciles (repeated quantiles merged, so a discrete feature such
as ``passenger_count`` gets fewer, wider bins); a value equal to an edge goes to the bin above it; missing
values (null/NaN) are a bin of their own, because a column that starts arriving empty is drift too. Each
reference bin then holds about a tenth of the reference, so PSI weighs every part of the distribution.

**Categories**: each of the ``max_categories`` most frequent reference values holding at least
``MIN_SHARE`` of the reference gets a bin; everything else, reference values outside those *and* new values
the reference never had, shares one ``<other>`` bin. The unseen values are counted and returned all the
same. Pooling keeps PSI comparable between a feature with 5 values and one with 3,000 grid cells: with
``k`` bins, PSI of two samples of the *same* distribution is about ``(k - 1) * (1/n_ref + 1/n_new)`` from
sampling noise alone, which many sparse bins would inflate. Unseen values go with the rare ones because a
sample of a long-tailed feature (grid cells) always misses some rare values that new rows then hit: a
separate ``<unseen>`` bin floored at ``eps`` would score 3 % of such rows as PSI 0.15. A genuinely new
value of a short-tailed feature (a new vendor, a new city) still scores high: there ``<other>`` is empty
in the reference.

**KS**: :func:`scipy.stats.ks_2samp` on the non-missing values (statistic = the largest gap between the two
empirical CDFs). With tens of thousands of rows its p-value is tiny for any visible shift, so thresholds
use PSI; KS is reported beside it as a second, bin-free view.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

EPS = 1e-4
BINS = 10
MAX_CATEGORIES = 20
MIN_SHARE = 0.005  # a category needs this share of the reference for a bin of its own
OTHER, MISSING = "<other>", "<missing>"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def quantile_edges(x: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Inner bin edges at the ``bins``-quantiles of the finite values of ``x``, repeated edges merged.

    >>> quantile_edges(np.arange(100.0), 4)
    array([24.75, 49.5 , 74.25])
    >>> quantile_edges(np.array([1.0] * 8 + [2.0, 3.0]), 10)  # ties collapse
    array([1. , 1.2, 2.1])
    """
    x = np.asarray(x, np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin ``(-inf, e0), [e0, e1), ..., [e_last, inf)`` plus a last bin for NaN.

    >>> bin_counts(np.array([0.0, 1.0, 1.5, 2.0, np.nan]), np.array([1.0, 2.0]))
    array([1, 2, 1, 1])
    """
    x = np.asarray(x, np.float64)
    nan = np.isnan(x)
    idx = np.searchsorted(edges, x[~nan], side="right")
    return np.append(np.bincount(idx, minlength=len(edges) + 1), int(nan.sum()))


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable names of :func:`bin_counts`' bins.

    >>> bin_labels([1.0, 2.5])
    ['< 1', '[1, 2.5)', '>= 2.5', 'missing']
    """
    if len(edges) == 0:
        return ["all", "missing"]
    e = [f"{v:.4g}" for v in edges]
    inner = [f"[{a}, {b})" for a, b in itertools.pairwise(e)]
    return [f"< {e[0]}", *inner, f">= {e[-1]}", "missing"]


def psi(
    ref_counts: Sequence[float] | np.ndarray, new_counts: Sequence[float] | np.ndarray, eps: float = EPS
) -> float:
    """PSI of two count vectors over the same bins (NaN when either side is empty).

    >>> round(psi([50, 50], [50, 50]), 6)
    0.0
    >>> round(psi([50, 50], [90, 10]), 4)  # 0.4 * ln(1.8) + 0.4 * ln(5)
    0.8789
    """
    ref, new = np.asarray(ref_counts, np.float64), np.asarray(new_counts, np.float64)
    if ref.shape != new.shape:
        raise ValueError(f"bins differ: {ref.shape=} vs {new.shape=}")
    if ref.sum() <= 0 or new.sum() <= 0:
        return float("nan")
    p = np.maximum(ref / ref.sum(), eps)
    q = np.maximum(new / new.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(ref: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, p-value)`` on the finite values; NaNs when a side has
    none.

    >>> ks(np.arange(100.0), np.arange(100.0))
    (0.0, 1.0)
    """
    from scipy.stats import ks_2samp  # scipy is heavy to import; only drift needs it

    a, b = np.asarray(ref, np.float64), np.asarray(new, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    r = ks_2samp(a, b)
    return float(r.statistic), float(r.pvalue)


def quantiles(x: np.ndarray, qs: Sequence[float] = QUANTILES) -> dict[str, float]:
    """``{"p1": ..., "p50": ..., ...}`` of the finite values (NaN when there are none)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    vals = np.quantile(x, qs) if x.size else np.full(len(qs), np.nan)
    return {f"p{round(q * 100):d}": float(v) for q, v in zip(qs, vals, strict=True)}


def categorical_bins(
    ref_counts: Mapping[str, int],
    new_values: Sequence[str] | np.ndarray,
    *,
    max_categories: int = MAX_CATEGORIES,
    complete: bool = True,
    ref_other: int = 0,
) -> dict[str, Any]:
    """Reference and new counts over the pooled categories (see the module doc).

    ``ref_counts`` maps each reference value (a string; missing as ``<missing>``) to its count;
    ``complete=False`` says it lists only the most frequent values (``ref_other`` rows had other values),
    so a new value missing from it may be a rare reference value and is not counted as unseen.

    Returns ``{labels, ref, new, unseen}`` with ``unseen`` = ``{value: count}`` of new values the reference
    never had (most frequent first).

    >>> b = categorical_bins({"a": 60, "b": 30, "c": 10}, ["a", "a", "b", "d", "d", "c"], max_categories=2)
    >>> b["labels"], b["ref"], b["new"], b["unseen"]
    (['a', 'b', '<other>'], [60, 30, 10], [2, 1, 3], {'d': 2})
    """
    n_ref = sum(ref_counts.values()) + ref_other
    ranked = sorted(ref_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [k for k, c in ranked[:max_categories] if c >= MIN_SHARE * n_ref]
    index = {k: i for i, k in enumerate(top)}
    values, counts = np.unique(np.asarray(new_values, dtype=object).astype(str), return_counts=True)
    ref = [int(ref_counts[k]) for k in top] + [n_ref - sum(int(ref_counts[k]) for k in top)]
    new = [0] * (len(top) + 1)
    unseen: dict[str, int] = {}
    for value, c in zip(values.tolist(), counts.tolist(), strict=True):
        new[index.get(value, len(top))] += c
        if complete and value not in ref_counts:
            unseen[value] = c
    labels = [*top, OTHER]
    if ref[-1] == 0 and new[-1] == 0:  # nothing to pool: no <other> bin
        labels, ref, new = labels[:-1], ref[:-1], new[:-1]
    unseen = dict(sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0])))
    return {"labels": labels, "ref": ref, "new": new, "unseen": unseen}
