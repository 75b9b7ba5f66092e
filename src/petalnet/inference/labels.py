"""Which labels to doubt, given out-of-fold probabilities and features: what `data issues` (label_issues.py)
flags. cleanlab does the finding; scikit-learn the default model (both: pip install 'petalnet[issues]').

    probs, c = logistic_out_of_fold(features, labels, folds, num_classes)   # (N, C): each row from the other folds
    label_quality(labels, probs)           (N,) 0-1: how much the probabilities believe each given label
    find_label_problems(labels, probs)     {index, ...}: the labels confident learning doubts
    outliers(features)                     {index, ...}: photos far from all others
    conflicts(keys, labels, probs)         {index: the copies' label}: copies given different labels

A label is a class index, or for multi-label photos (multilabel=True) a tuple of class indices.
"""

from collections import defaultdict

import numpy as np

from petalnet.errors import UserError

OUTLIER_THRESHOLD = 0.37037  # cleanlab Datalab's: farther than Q3 + (1 / t - 1) * IQR of the mean distances
NEIGHBOURS = 10  # cleanlab's default k for the mean distance


def import_cleanlab():
    try:
        import cleanlab  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise UserError("data issues needs cleanlab and scikit-learn: pip install 'petalnet[issues]'") from None


def logistic_out_of_fold(features, labels, folds, num_classes, multilabel=False, seed=0):
    """(probs, C): each photo's class probabilities from a logistic regression fitted on the other folds'
    standardized features (one-vs-rest sigmoids for multi-label photos), at the regularization C of LOGISTIC_CS
    whose out-of-fold probabilities have the lowest log-loss: the best calibrated, which confident learning
    needs (a few photos want a strong prior, thousands of photos a weak one)."""
    target = multi_hot(labels, num_classes) if multilabel else np.asarray(labels)
    best, worse = None, 0
    for c in LOGISTIC_CS:  # the log-loss falls, then rises: stop once two in a row were worse than the best
        probs = _fitted_out_of_fold(features, target, np.asarray(folds), num_classes, multilabel, c, seed)
        loss = _log_loss(probs, target, multilabel)
        if best is None or loss < best[0]:
            best, worse = (loss, probs, c), 0
        else:
            worse += 1
            if worse == 2:
                break
    return best[1], best[2]


LOGISTIC_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # inverse L2 strengths, tried in this order


def _fitted_out_of_fold(features, target, folds, num_classes, multilabel, c, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probs = np.zeros((len(target), num_classes))
    for fold in np.unique(folds):
        held, fit = folds == fold, folds != fold
        regression = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(regression) if multilabel else regression)
        model.fit(features[fit], target[fit])
        found = model.predict_proba(features[held])
        if multilabel:
            probs[held] = found
        else:  # a class absent from the other folds gets probability 0
            probs[np.ix_(held, model.classes_)] = found
    return probs


def _log_loss(probs, target, multilabel):
    probs = np.clip(probs, 1e-7, 1 - 1e-7)
    if multilabel:
        return float(-np.mean(target * np.log(probs) + (1 - target) * np.log(1 - probs)))
    return float(-np.mean(np.log(probs[np.arange(len(target)), target])))


def multi_hot(labels, num_classes):
    rows = np.zeros((len(labels), num_classes), dtype=int)
    for i, label in enumerate(labels):
        rows[i, list(label)] = 1
    return rows


def label_quality(labels, probs, multilabel=False):
    """Each photo's label quality, 0-1, as cleanlab ranks label issues: the probability of its given class
    (self-confidence); a multi-label photo: cleanlab's multi-label quality of its set."""
    if multilabel:
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        return get_label_quality_scores([list(label) for label in labels], probs)
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(np.asarray(labels), probs, method="self_confidence")


def find_label_problems(labels, probs, multilabel=False):
    """The indices of the photos whose given label confident learning doubts: cleanlab's find_label_issues
    (its default: prune by noise rate)."""
    if multilabel:
        from cleanlab.multilabel_classification.filter import find_label_issues

        flagged = find_label_issues([list(label) for label in labels], probs)
    else:
        from cleanlab.filter import find_label_issues

        flagged = find_label_issues(np.asarray(labels), probs)
    return {int(i) for i in np.flatnonzero(flagged)}


def predicted(probs, multilabel=False):
    """The most probable class of one photo's probabilities (multi-label: the classes at 0.5 or more)."""
    return tuple(int(c) for c in np.flatnonzero(probs >= 0.5)) if multilabel else int(np.argmax(probs))


def outliers(features):
    """{index: (1 - cleanlab's outlier score, None)} for the photos whose mean cosine
    distance to their nearest photos is farther than Q3 + 1.7 IQR of everyone's."""
    from cleanlab.outlier import OutOfDistribution

    k = min(NEIGHBOURS, len(features) - 1)
    scores = OutOfDistribution({"k": k}).fit_score(features=features, verbose=False)
    distance = -np.log(np.clip(scores, 1e-300, 1.0))  # cleanlab's score is exp(-distance / scale): undone
    q1, q3 = np.percentile(distance, [25, 75])
    limit = q3 + (1 / OUTLIER_THRESHOLD - 1) * (q3 - q1)
    return {int(i) for i in np.flatnonzero(distance > limit)}


def conflicts(keys, labels, probs, multilabel=False):
    """{index: the unit's label} for each photo of a unit of copies (photos sharing a key: byte copies and
    near-duplicates) given different labels whose label is not the unit's: the most probable class (label set
    at 0.5) of the unit's mean probabilities."""
    units = defaultdict(list)
    for i, key in enumerate(keys):
        units[key].append(i)
    found = {}
    for group in units.values():
        given = {tuple(labels[i]) if multilabel else labels[i] for i in group}
        if len(given) < 2:
            continue
        label = predicted(np.mean([probs[i] for i in group], axis=0), multilabel)
        found.update({i: label for i in group if (tuple(labels[i]) if multilabel else labels[i]) != label})
    return found
