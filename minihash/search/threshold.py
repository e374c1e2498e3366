"""The no-match decision: a score for each match, and the lowest score that few negative queries reach.

A query whose audio is not in the database still gets a best candidate; its score is a chance
score. The threshold is calibrated on such negative queries: at most `max_false` of them may reach
it. With a confidence, the share is promised for new negatives as well, through the one-sided
Clopper-Pearson upper bound on a binomial proportion (Clopper and Pearson, Biometrika 1934).

Notebook: 08_search.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
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


def calibrate_threshold(negatives, max_false: float = 0.05, confidence: float | None = None,
                        worth: float | None = None) -> float:
    """The lowest threshold at which at most `max_false` of queries not in the DB match.

    Args:
        negatives: scores, or `Match`es (anything with a `.score`), of queries whose audio is not in the DB.
        max_false: the share of them allowed to match (score >= threshold).
        confidence: if given, the share is promised for new negatives with this confidence
            (`allowed_passes`), not only for these.
        worth: how many independent negatives they are worth (default: as many as they are). Overlapping
            excerpts of the same audio are fewer than their number: with `confidence`, the share that may
            pass is the one `allowed_passes` gives for `worth` negatives.

    Returns:
        the threshold.

    Notebook: 08_search.ipynb
    """
    # a Match by its .score, not isinstance: base.py (Match) imports this module
    s = np.sort([float(getattr(m, "score", m)) for m in negatives])[::-1]
    if len(s) == 0:
        raise ValueError("calibrating a threshold needs at least one negative query")
    if worth is None or confidence is None or worth >= len(s):
        allowed = allowed_passes(len(s), max_false, confidence)
    else:  # the share allowed among `worth` independent negatives, applied to all of them
        n = max(int(np.floor(worth + 1e-9)), 1)
        allowed = int(np.floor(allowed_passes(n, max_false, confidence) * len(s) / n + 1e-9))
    if allowed >= len(s):
        return float(-np.inf)
    return float(np.nextafter(s[allowed], np.inf))  # only scores above s[allowed] pass


# ----------------------------------------------------------------------------
# the decision score: what a match's features say about it being right

# a Match's features, in this order (`match_features`): its mean similarity at the alignment, the margin
# of that over the best alignment in another track, and the share of its windows whose own best
# candidate agrees with the alignment
FEATURES = ("similarity", "margin", "agree")
KINDS = FEATURES + ("logistic",)


def match_features(matches) -> np.ndarray:
    """(n, 3) features of Matches (anything with .similarity, .margin, .agree, .n_windows): `FEATURES`.

    Notebook: 08_search.ipynb
    """
    return np.array([[m.similarity, m.margin, m.agree / max(m.n_windows, 1)] for m in matches],
                    dtype=np.float64).reshape(-1, len(FEATURES))


def decision_scores(decision: dict | None, X) -> np.ndarray:
    """The decision score of each row of features X (n, 3) under `decision`.

    Args:
        decision: {"kind": "similarity" | "margin" | "agree"}: that feature alone (the agreeing share,
            ties broken by the similarity); {"kind": "logistic", ...}: the probability `fit_logistic`'s
            parameters give; None: the similarity.
        X: (n, 3) features, `match_features`.

    Returns:
        (n,) scores, higher = more likely a right match.

    Notebook: 08_search.ipynb
    """
    X = np.asarray(X, dtype=np.float64).reshape(-1, len(FEATURES))
    kind = (decision or {}).get("kind", "similarity")
    if kind == "logistic":
        z = ((X - decision["mean"]) / decision["std"]) @ np.asarray(decision["w"]) + decision["b"]
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "agree":
        return X[:, 2] + 1e-3 * X[:, 0]  # similarities are <= 1, so they only break ties
    if kind not in FEATURES:
        raise ValueError(f"unknown decision kind {kind!r}: choose one of {KINDS}")
    return X[:, FEATURES.index(kind)].copy()


def _balanced_log_loss(theta, Xs, y, l2):
    """Mean logistic loss over the positives plus over the negatives (each class weighs a half),
    plus l2 / 2 |w|^2; and its gradient. theta = (w..., b)."""
    w, b = theta[:-1], theta[-1]
    z = Xs @ w + b  # (n,)
    wt = np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1))  # (n,)
    sign = np.where(y, -1.0, 1.0)  # loss softplus(-z) for a positive, softplus(z) for a negative
    loss = np.sum(wt * np.logaddexp(0.0, sign * z)) + 0.5 * l2 * w @ w
    g = wt * sign / (1.0 + np.exp(-sign * z))  # d loss / dz
    return loss, np.concatenate([Xs.T @ g + l2 * w, [g.sum()]])


def fit_logistic(X, y, l2: float = 1e-3) -> dict:
    """Logistic regression of right (y = 1) against wrong matches on their features, classes balanced.

    Features are standardised first; the loss weighs each class as a half (so the share of
    positives among the calibration queries does not move the score) plus a small ridge l2 / 2 |w|^2,
    which keeps the weights finite when the classes separate. Minimised by L-BFGS (scipy).

    Args:
        X: (n, d) features. y: (n,) bool, both classes present.
        l2: ridge strength, on standardised features.

    Returns:
        {"kind": "logistic", "mean", "std", "w" (d,), "b"}: JSON-able, for `decision_scores`.

    Notebook: 08_search.ipynb
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=bool)
    if len(X) != len(y) or y.all() or not y.any():
        raise ValueError(f"logistic regression needs both classes: {int(y.sum())} positives, {int((~y).sum())} negatives")
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)  # a constant feature (e.g. agreement of 1-window queries) stays 0
    Xs = (X - mean) / std
    res = minimize(_balanced_log_loss, np.zeros(X.shape[1] + 1), args=(Xs, y, l2), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 1000})
    return {"kind": "logistic", "mean": mean.tolist(), "std": std.tolist(), "w": res.x[:-1].tolist(),
            "b": float(res.x[-1])}


# ----------------------------------------------------------------------------
# an index's decision: its score per query length, and the thresholds, kept in its meta

MIN_CLASS = 20  # a query length's decision is fitted only with this many right and wrong matches of it


class NoMatch:
    """The no-match decision of an index (`BaseIndex` inherits it), kept in its JSON-able `meta`:
    `decision` (the score per query length, by number of windows), `calibration` (the negatives'
    scores, so a threshold for any share can be set again without searching) and the thresholds.
    """

    meta: dict

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.0))

    @threshold.setter
    def threshold(self, value: float):
        self.meta["threshold"] = float(value)

    @property
    def thresholds(self) -> dict[int, float]:
        """Thresholds by the number of query windows (a 1 s query is one window and scores its
        single best similarity; a 5 s query averages nine, so chance scores are lower)."""
        return {int(k): float(v) for k, v in self.meta.get("thresholds", {}).items()}

    def threshold_for(self, n_windows: int) -> float:
        """The threshold for a query of `n_windows` windows: the one calibrated on the longest
        negatives that are not longer than the query; the overall `threshold` if there are none."""
        return _by_length(self.thresholds, n_windows, self.threshold)

    def decision_for(self, n_windows: int) -> dict | None:
        """The decision (`decision_scores`) for a query of `n_windows` windows: the one fitted on the
        longest calibration queries not longer than it; None (the similarity) if there is none."""
        return _by_length({int(k): v for k, v in self.meta.get("decision", {}).items()}, n_windows, None)

    def score_features(self, X, n_windows: int) -> np.ndarray:
        """Decision scores of the features X (n, 3) (`match_features`) of `n_windows`-window queries."""
        return decision_scores(self.decision_for(n_windows), X)

    def rescore(self, matches) -> np.ndarray:
        """(n,) the decision scores of Matches (searched before the decision changed)."""
        X, n = match_features(matches), [m.n_windows for m in matches]
        return np.array([self.score_features(X[i], n[i])[0] for i in range(len(X))])

    def fit_decision(self, negatives, positives, right, min_class: int = MIN_CLASS) -> dict:
        """Fit the decision score of each query length (`fit_logistic`): right matches against wrong
        ones and negatives. A length with fewer than `min_class` of either keeps the decision of a
        shorter length (or the similarity).

        Args:
            negatives: Matches of queries whose audio is not in the index.
            positives: Matches of queries whose audio is; right: (n,) bool, whether each is right.

        Returns:
            {number of windows: decision}, also stored in `meta["decision"]`.
        """
        ms = list(negatives) + list(positives)
        y = np.concatenate([np.zeros(len(negatives), bool), np.asarray(right, dtype=bool)])
        X, n = match_features(ms), np.array([m.n_windows for m in ms])
        fits = {}
        for w in np.unique(n):
            yw = y[n == w]
            if yw.sum() >= min_class and (~yw).sum() >= min_class:
                fits[str(int(w))] = fit_logistic(X[n == w], yw)
        self.meta["decision"] = fits
        return {int(k): v for k, v in fits.items()}

    def calibrate(self, negatives, max_false: float = 0.05, n_windows=None, confidence: float | None = None,
                  searched=None, worth=None) -> float:
        """Set (and return) the threshold from negative queries' Matches or scores, and keep the scores
        (`set_max_false` sets it again for another share, without searching).

        With `n_windows` (each negative's number of query windows), also one threshold per
        window count that has at least 1 / max_false negatives (fewer cannot resolve the share).
        `searched` is the share of the index each negative was searched in (1 - its track's share
        for one searched without its own track; default 1): a chance match has that much less
        audio to come from, so a group's share allowed to pass is scaled by its mean.
        `worth` is what each negative counts for the confidence, in (0, 1] (default 1): overlapping
        excerpts of a small collection count as the independent ones they stand for
        (`calibrate_threshold`).
        """
        scores = [float(getattr(m, "score", m)) for m in negatives]
        searched = np.ones(len(scores)) if searched is None else np.asarray(searched, dtype=np.float64)
        worth = np.ones(len(scores)) if worth is None else np.asarray(worth, dtype=np.float64)
        if (n_windows is not None and len(n_windows) != len(scores)) or len(searched) != len(scores) \
                or len(worth) != len(scores):
            counts = "no" if n_windows is None else len(n_windows)
            raise ValueError(f"{len(scores)} negatives but {counts} window counts, {len(searched)} "
                             f"shares or {len(worth)} worths")
        if not np.all((worth > 0) & (worth <= 1)):
            raise ValueError("what a negative is worth must lie in (0, 1]")
        self.meta["calibration"] = {"scores": scores, "confidence": confidence, "searched": searched.tolist(),
                                    "worth": worth.tolist(),
                                    "n_windows": None if n_windows is None else [int(n) for n in n_windows]}
        return self.set_max_false(max_false)

    def set_max_false(self, max_false: float) -> float:
        """Set the thresholds again, for another share of false matches, from the kept negatives' scores.

        Returns:
            the overall threshold.
        """
        cal = self.meta.get("calibration")
        if not cal:
            raise ValueError("this index keeps no calibration scores: index it again to change --max-false")
        if not 0.0 <= max_false < 1.0:
            raise ValueError(f"max_false must be a share from 0 to 1, got {max_false:g}")
        scores, confidence = np.asarray(cal["scores"]), cal["confidence"]
        searched = np.asarray(cal.get("searched") or np.ones(len(scores)))
        worth = np.asarray(cal.get("worth") or np.ones(len(scores)))

        def threshold(group):  # the group's share allowed, scaled by how much of the index it searched
            return calibrate_threshold(scores[group], max_false * searched[group].mean(), confidence,
                                       worth[group].sum())

        self.threshold = threshold(np.ones(len(scores), dtype=bool))
        self.meta["max_false"] = float(max_false)
        self.meta.pop("thresholds", None)
        if cal["n_windows"] is not None:
            n_windows = np.asarray(cal["n_windows"])
            need = int(np.ceil(1.0 / max_false - 1e-9)) if max_false > 0 else 1
            self.meta["thresholds"] = {str(int(n)): threshold(n_windows == n)
                                       for n in np.unique(n_windows) if np.sum(n_windows == n) >= need}
        return self.threshold


def _by_length(table: dict, n_windows: int, default):
    """table[the longest length <= n_windows], or `default` if there is none."""
    fit = [n for n in table if n <= n_windows]
    return table[max(fit)] if fit else default
