"""How sure the report's numbers are: bootstrap confidence intervals of means, permutation tests between
two sets of scores, and the rank correlation of the two identity metrics.

With twenty images per group, a difference of 0.03 in mean sim-score can be noise. Every procedure here
is fixed in advance and seeded, so the report's numbers can be recomputed from `results.csv` alone
(values taken in the CSV's row order):

- **Bootstrap 95% interval of a mean** (percentile method): `BOOTSTRAP_RESAMPLES` resamples of the n values
  drawn with replacement by `numpy.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(resamples, n))`
  (a fresh generator for every interval), the mean of each, and the 2.5th and 97.5th percentiles of those
  means (numpy's linear interpolation). One value gives the interval [value, value]; none gives none.
- **Permutation test of equal means** (two-sided): the statistic is |mean(a) − mean(b)|; the p-value is the
  share of relabellings of the pooled values (a's size kept) whose statistic is at least the observed one
  (within 1e-12). Exact, over every relabelling, when there are at most `EXACT_LIMIT`; otherwise
  `PERMUTATIONS` random ones, each a row of `default_rng(PERMUTATION_SEED).permuted(tile(pooled), axis=1)`
  whose first len(a) values are a, and p = (1 + hits) / (1 + PERMUTATIONS). No correction for multiple
  comparisons is applied; with many pairs, expect some small p-values by chance.
- **Spearman's rank correlation** of the dlib sim-score and the ArcFace similarity over the images that
  have both (scipy). The sim-score is a distance and ArcFace a similarity, so agreement shows as ρ < 0.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 2026
PERMUTATIONS = 10_000
PERMUTATION_SEED = 2027
EXACT_LIMIT = 20_000
_TIE = 1e-12


def procedures() -> dict:
    """The settings of the procedures, as summary.json states them."""
    return {
        "bootstrap": {
            "interval": "percentile",
            "confidence": CONFIDENCE,
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": BOOTSTRAP_SEED,
        },
        "permutation": {
            "statistic": "|mean(a) - mean(b)|",
            "sides": 2,
            "exact_up_to": EXACT_LIMIT,
            "permutations": PERMUTATIONS,
            "seed": PERMUTATION_SEED,
        },
        "rank_correlation": "spearman",
    }


def bootstrap_interval(values, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """The percentile bootstrap 95% interval of the mean of `values` (lower, upper), or None for no values."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return None
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    indices = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[indices].mean(axis=1)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    lower, upper = np.percentile(means, [tail, 100 - tail])
    return (float(lower), float(upper))


@dataclass(frozen=True)
class Comparison:
    """A permutation test between two sets of scores."""

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float  # mean_a - mean_b
    p_value: float
    exact: bool  # every relabelling counted (else PERMUTATIONS random ones)

    def as_dict(self) -> dict:
        return asdict(self)


def permutation_test(
    a, b, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED, exact_limit: int = EXACT_LIMIT
) -> tuple[float, bool]:
    """(two-sided p-value, exact?) of the difference between the means of `a` and `b` (see the module)."""
    x, y = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    pooled = np.concatenate([x, y])
    n_a, total = x.size, pooled.size
    observed = abs(x.mean() - y.mean())
    if math.comb(total, n_a) <= exact_limit:
        sum_all = pooled.sum()
        hits = count = 0
        for chosen in itertools.combinations(range(total), n_a):
            first = pooled[list(chosen)].sum()
            statistic = abs(first / n_a - (sum_all - first) / (total - n_a))
            hits += statistic >= observed - _TIE
            count += 1
        return hits / count, True
    shuffled = np.random.default_rng(seed).permuted(np.tile(pooled, (permutations, 1)), axis=1)
    statistics = np.abs(shuffled[:, :n_a].mean(axis=1) - shuffled[:, n_a:].mean(axis=1))
    hits = int(np.count_nonzero(statistics >= observed - _TIE))
    return (1 + hits) / (1 + permutations), False


def compare(name_a: str, a, name_b: str, b) -> Comparison | None:
    """The permutation test of two named sets of scores; None when either has fewer than two."""
    a, b = list(a), list(b)
    if len(a) < 2 or len(b) < 2:
        return None
    p_value, exact = permutation_test(a, b)
    mean_a, mean_b = float(np.mean(a)), float(np.mean(b))
    return Comparison(name_a, name_b, len(a), len(b), mean_a, mean_b, mean_a - mean_b, float(p_value), exact)


def rank_correlation(pairs) -> dict | None:
    """Spearman's ρ (and its p-value) of (sim-score, ArcFace) pairs; None with fewer than three pairs."""
    pairs = [(s, f) for s, f in pairs if s is not None and f is not None]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    first, second = zip(*pairs)
    if len(set(first)) < 2 or len(set(second)) < 2:  # a constant column has no ranks to correlate
        return {"n": len(pairs), "spearman_rho": None, "p_value": None}
    result = spearmanr(first, second)
    return {"n": len(pairs), "spearman_rho": float(result.statistic), "p_value": float(result.pvalue)}
