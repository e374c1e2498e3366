"""The no-match threshold: the lowest score that at most a given share of negative queries reach.

A query whose audio is not in the database still gets a best candidate; its score is a chance
score. The threshold is calibrated on such negative queries: at most `max_false` of them may reach
it. With a confidence, the share is promised for new negatives as well, through the one-sided
Clopper-Pearson upper bound on a binomial proportion (Clopper and Pearson, Biometrika 1934).

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta

# ----------------------------------------------------------------------------
# how many negatives may pass, and the threshold that lets them


def allowed_passes(n: int, max_false: float, confidence: float | None = None) -> int:
    """How many of n negatives may pass a threshold that promises at most `max_false` false matches.

    Without `confidence`, floor(max_false * n): the share among these very negatives. With it, the
    largest k whose one-sided Clopper-Pearson upper bound at `confidence` stays <= max_false: the
    promise then holds for new negatives too, with that confidence (k = 0 if even none passing
    cannot give it: too few negatives).

    Notebook: 08_search.ipynb
    """
    if confidence is None:
        return int(np.floor(max_false * n + 1e-9))
    k = 0
    while k < n and beta.ppf(confidence, k + 2, n - k - 1) <= max_false:  # the bound for k + 1 passing
        k += 1
    return k


def calibrate_threshold(negatives, max_false: float = 0.05, confidence: float | None = None) -> float:
    """The lowest threshold at which at most `max_false` of queries not in the DB match.

    Args:
        negatives: scores, or `Match`es (anything with a `.score`), of queries whose audio is not in the DB.
        max_false: the share of them allowed to match (score >= threshold).
        confidence: if given, the share is promised for new negatives with this confidence
            (`allowed_passes`), not only for these.

    Returns:
        the threshold.

    Notebook: 08_search.ipynb
    """
    # a Match by its .score, not isinstance: base.py (Match) imports this module
    s = np.sort([float(getattr(m, "score", m)) for m in negatives])[::-1]
    if len(s) == 0:
        raise ValueError("calibrating a threshold needs at least one negative query")
    allowed = allowed_passes(len(s), max_false, confidence)
    if allowed >= len(s):
        return float(-np.inf)
    return float(np.nextafter(s[allowed], np.inf))  # only scores above s[allowed] pass
