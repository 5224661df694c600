"""Disentanglement metrics: how well a representation separates known factors.

Every metric compares codes z (a representation, e.g. the posterior mean,
`[N, D]`) with ground-truth factors v (`[N, K]`, integer-valued unless said
otherwise). The defaults are those of disentanglement_lib [6] (its
`unsupervised_study_v1` metric configurations), which is the reference
implementation behind most published numbers.

* ``mig``, the Mutual Information Gap [3]. Each code dimension is
  discretised into equal-width bins; with I(z_j; v_k) the discrete mutual
  information and H(v_k) the factor entropy,

      MIG = 1/K sum_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k),

  where z_(1), z_(2) are the code dimensions with the largest and the
  second-largest mutual information with v_k. 1 when each factor is captured
  by one code dimension only, 0 when two share it equally.
* ``sap``, the Separated Attribute Predictability score [4]. A score matrix
  S_jk says how well code dimension j alone predicts factor k: the R^2 of a
  linear regression (continuous factors) or the test accuracy of a linear
  classifier on that single dimension (discrete factors); SAP is the mean
  over factors of the gap between the two best dimensions, S_(1)k - S_(2)k.
* ``dci``, Disentanglement, Completeness and Informativeness [5]. One
  gradient-boosted-trees classifier per factor predicts v_k from z; its
  feature importances form R_jk >= 0. With P_jk = R_jk / sum_k' R_jk',

      D = sum_j rho_j (1 - H_K(P_j.)),   rho_j = sum_k R_jk / sum_jk R_jk,
      C = sum_k sigma_k (1 - H_D(R_.k / sum_j R_jk)),
                                         sigma_k = sum_j R_jk / sum_jk R_jk,

  H_b the entropy in base b: each code dimension should matter for one
  factor (D) and each factor should be captured by one dimension (C); the
  informativeness I is the classifiers' test accuracy (as disentanglement_lib
  reports it; [5] uses the prediction error instead).
* ``beta_vae_score`` [1] and ``factor_vae_score`` [2] sample their own data
  from a `GroundTruthSampler` (e.g. `tfpvae.sprites.SpritesSampler`): both
  fix one factor k over a batch and ask a classifier to recover k from the
  representations, the beta-VAE score from the mean absolute difference of
  paired codes (logistic regression), the FactorVAE score from the code
  dimension of least normalised variance (majority vote). The score is the
  evaluation accuracy; chance is 1/K.

``all_scores`` computes every one of them for one representation, with
disentanglement_lib's sample sizes (`NUM_TRAIN`, `NUM_TEST`,
`SAMPLED_BATCH_SIZE`): it is what ``python -m tfpvae.evaluate
--disentanglement`` reports.

#### References
[1] Higgins, I. et al. beta-VAE: learning basic visual concepts with a
    constrained variational framework. ICLR 2017.
[2] Kim, H. and Mnih, A. Disentangling by factorising. ICML 2018.
[3] Chen, R. T. Q., Li, X., Grosse, R. and Duvenaud, D. Isolating sources of
    disentanglement in variational autoencoders. NeurIPS 2018.
[4] Kumar, A., Sattigeri, P. and Balakrishnan, A. Variational inference of
    disentangled latent concepts from unlabeled observations. ICLR 2018.
[5] Eastwood, C. and Williams, C. K. I. A framework for the quantitative
    evaluation of disentangled representations. ICLR 2018.
[6] Locatello, F. et al. Challenging common assumptions in the unsupervised
    learning of disentangled representations. ICML 2019.
    https://github.com/google-research/disentanglement_lib
"""

from __future__ import annotations

import time
from typing import Callable, Protocol, Sequence

import numpy as np
import scipy.stats
from absl import logging
from sklearn import linear_model, metrics, svm
from sklearn.ensemble import GradientBoostingClassifier

#: Fraction of the given points held out for testing when no test arrays are
#: passed: disentanglement_lib draws 10,000 training and 5,000 test points.
TEST_FRACTION = 1.0 / 3.0
#: Observations per call of the representation function in the sampled
#: scores (the results do not depend on it).
_OBSERVATIONS_PER_CALL = 4096
#: disentanglement_lib's sample sizes: training points of every score (MIG's
#: points, the classifiers' training points, the FactorVAE variance
#: estimate) and test (evaluation) points.
NUM_TRAIN = 10_000
NUM_TEST = 5_000
#: disentanglement_lib's observations per point (beta-VAE) or vote
#: (FactorVAE).
SAMPLED_BATCH_SIZE = 64

Representation = Callable[[np.ndarray], np.ndarray]


class GroundTruthSampler(Protocol):
    """Ground-truth data with known factors (disentanglement_lib's protocol).

    Attributes:
        num_factors: Number of factors K.
        factor_sizes: Number of values of each factor, length K.
    """
    num_factors: int
    factor_sizes: Sequence[int]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Integer factors `[n, K]`, uniform over the grid."""

    def sample_observations_from_factors(
            self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Observations `[n, ...]` of the factors `[n, K]`."""


def _generator(seed) -> np.random.Generator:
    """A numpy Generator from a Generator or an int seed."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise ValueError(f"seed must be an int or a numpy Generator; got "
                     f"{type(seed).__name__} (use np.random.default_rng(seed)).")


def _sklearn_seed(rng: np.random.Generator) -> int:
    """An int random_state for a scikit-learn estimator, drawn from `rng`."""
    return int(rng.integers(2 ** 31 - 1))


def _check_codes(codes, factors, *, integer_factors: bool, min_codes: int = 1,
                 prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validates codes [N, D] and factors [N, K]; returns them as arrays.

    `min_codes` is 1 or 2. Factors are returned as int64 when
    `integer_factors`, else float64; `prefix` ("" or "test_") names the
    arguments in the errors.
    """
    codes, factors = np.asarray(codes), np.asarray(factors)
    c, f = f"{prefix}codes", f"{prefix}factors"
    if codes.ndim != 2:
        raise ValueError(f"{c} must have shape [N, num_codes]; got "
                         f"{codes.shape} (use {c}[:, None] for one code).")
    if factors.ndim != 2:
        raise ValueError(f"{f} must have shape [N, num_factors]; got "
                         f"{factors.shape} (use {f}[:, None] for one factor).")
    if len(codes) != len(factors):
        raise ValueError(f"{c} and {f} must have the same length N; got "
                         f"{len(codes)} and {len(factors)}.")
    if len(codes) < 2:
        raise ValueError(f"{c} need at least 2 points; got {len(codes)}.")
    if codes.shape[1] < min_codes:
        needed = ("2 code dimensions (it compares the best two)"
                  if min_codes > 1 else "1 code dimension")
        raise ValueError(f"This score needs at least {needed}; got "
                         f"{codes.shape[1]}.")
    codes = codes.astype(np.float64)
    if not np.isfinite(codes).all():
        raise ValueError(f"{c} contain NaN or inf; drop or fix those points.")
    if not integer_factors:
        return codes, factors.astype(np.float64)
    if factors.dtype == bool or np.issubdtype(factors.dtype, np.integer):
        return codes, factors.astype(np.int64)
    if (not np.issubdtype(factors.dtype, np.floating)
            or not np.isfinite(factors).all()
            or (factors != np.round(factors)).any()):
        raise ValueError(f"{f} must be integer-valued for this score; "
                         f"discretise continuous factors first.")
    return codes, factors.astype(np.int64)


def _check_varied(factors: np.ndarray, what: str = "factors") -> None:
    """Raises if a factor takes a single value (it has nothing to predict)."""
    constant = np.nonzero((factors == factors[:1]).all(axis=0))[0]
    if constant.size:
        raise ValueError(f"Factor {int(constant[0])} is constant in {what}; "
                         f"drop it or use more points.")


def _split(codes, factors, test_codes, test_factors, rng, *, integer_factors):
    """The given test arrays, or a seeded TEST_FRACTION hold-out of the data."""
    if (test_codes is None) != (test_factors is None):
        raise ValueError("Pass both test_codes and test_factors, or neither "
                         "(then a fraction of the data is held out).")
    if test_codes is not None:
        test_codes, test_factors = _check_codes(
            test_codes, test_factors, integer_factors=integer_factors,
            prefix="test_")
        if test_codes.shape[1] != codes.shape[1]:
            raise ValueError(f"test_codes must have {codes.shape[1]} code "
                             f"dimensions like codes; got {test_codes.shape[1]}.")
        if test_factors.shape[1] != factors.shape[1]:
            raise ValueError(f"test_factors must have {factors.shape[1]} "
                             f"factors like factors; got {test_factors.shape[1]}.")
        return codes, factors, test_codes, test_factors
    num_test = int(round(len(codes) * TEST_FRACTION))
    if num_test < 1 or num_test > len(codes) - 2:
        raise ValueError(f"Too few points ({len(codes)}) to hold out a test "
                         f"set; pass more points or test_codes/test_factors.")
    order = rng.permutation(len(codes))
    test, train = order[:num_test], order[num_test:]
    return codes[train], factors[train], codes[test], factors[test]


# Mutual Information Gap ----------------------------------------------------


def _histogram_discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width bin index (1..num_bins) of each code dimension, [N, D].

    As disentanglement_lib's histogram discretiser: the bins of
    `np.histogram(z_j, num_bins)` span [min z_j, max z_j] of each dimension.
    """
    return np.stack([np.digitize(z, np.histogram(z, num_bins)[1][:-1])
                     for z in codes.T], axis=1)


def _mutual_information(discrete_codes: np.ndarray,
                        factors: np.ndarray) -> np.ndarray:
    """Discrete mutual information in nats, [D, K]."""
    return np.array([[metrics.mutual_info_score(v, z) for v in factors.T]
                     for z in discrete_codes.T])


def _entropy(factors: np.ndarray) -> np.ndarray:
    """Discrete entropy of each factor in nats, [K]."""
    return np.array([metrics.mutual_info_score(v, v) for v in factors.T])


def mig(codes, factors, *, num_bins: int = 20) -> float:
    """Mutual Information Gap [3], with disentanglement_lib's discretisation.

    Chen et al. [3] estimate I(z_j; v_k) from the full posterior q(z|x);
    disentanglement_lib, followed here, discretises point codes (e.g. the
    posterior means) into histogram bins and uses the discrete plug-in
    estimate (`sklearn.metrics.mutual_info_score`, in nats).

    Args:
        codes: Representations `[N, D]`, D >= 2 (disentanglement_lib uses
            N = 10,000 points).
        factors: Integer-valued factors `[N, K]`, each taking >= 2 values.
        num_bins: Equal-width bins per code dimension (disentanglement_lib:
            20).

    Returns:
        The MIG in [0, 1]: the mean over factors of the gap between the two
        largest I(z_j; v_k), divided by H(v_k).
    """
    codes, factors = _check_codes(codes, factors, integer_factors=True,
                                  min_codes=2)
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2; got {num_bins}.")
    _check_varied(factors)
    information = _mutual_information(_histogram_discretize(codes, num_bins),
                                      factors)  # [D, K]
    top = np.sort(information, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / _entropy(factors)))


# SAP score -------------------------------------------------------------------


def _sap_continuous_scores(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """R^2 of the linear regression of v_k on z_j (squared correlation), [D, K].

    A code dimension of variance <= 1e-12 scores 0 (as disentanglement_lib).
    """
    z = codes - codes.mean(axis=0)
    v = factors - factors.mean(axis=0)
    covariance = z.T @ v / (len(z) - 1)                 # [D, K]
    z_variance = np.var(codes, axis=0, ddof=1)[:, None]
    v_variance = np.var(factors, axis=0, ddof=1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = covariance ** 2 / (z_variance * v_variance)
    return np.where(z_variance > 1e-12, scores, 0.0)


def _sap_discrete_scores(codes, factors, test_codes, test_factors,
                         rng) -> np.ndarray:
    """Test accuracy of a linear SVM on each single code dimension, [D, K]."""
    scores = np.zeros([codes.shape[1], factors.shape[1]])
    for j in range(codes.shape[1]):
        for k in range(factors.shape[1]):
            classifier = svm.LinearSVC(C=0.01, class_weight="balanced",
                                       random_state=_sklearn_seed(rng))
            classifier.fit(codes[:, j:j + 1], factors[:, k])
            predicted = classifier.predict(test_codes[:, j:j + 1])
            scores[j, k] = np.mean(predicted == test_factors[:, k])
    return scores


def sap(codes, factors, *, test_codes=None, test_factors=None,
        continuous_factors: bool = False, seed=0) -> float:
    """SAP score [4], as disentanglement_lib computes it.

    Continuous factors: S_jk is the R^2 of the linear regression of v_k on
    z_j (the squared correlation), in-sample on `codes`; no test set is used.
    Discrete factors (disentanglement_lib's default): S_jk is the test
    accuracy of `LinearSVC(C=0.01, class_weight="balanced")` trained on the
    single dimension z_j. disentanglement_lib reports the plain accuracy of
    this class-balanced classifier, and so does this function (the two agree
    for the balanced factors of a uniform grid).

    Args:
        codes: Representations `[N, D]`, D >= 2 (disentanglement_lib: 10,000
            training and 5,000 test points).
        factors: Factors `[N, K]`; integer-valued unless `continuous_factors`.
        test_codes, test_factors: Held-out points for the classifiers; when
            None (and the factors are discrete) a random `TEST_FRACTION` of
            the given points is held out, chosen by `seed`.
        continuous_factors: Score by R^2 instead of classification accuracy.
        seed: int or `np.random.Generator` for the split and the classifiers.

    Returns:
        The SAP score, the mean over factors of S_(1)k - S_(2)k.
    """
    codes, factors = _check_codes(codes, factors, min_codes=2,
                                  integer_factors=not continuous_factors)
    rng = _generator(seed)
    if continuous_factors:
        scores = _sap_continuous_scores(codes, factors)
    else:
        codes, factors, test_codes, test_factors = _split(
            codes, factors, test_codes, test_factors, rng, integer_factors=True)
        _check_varied(factors, "the training points")
        scores = _sap_discrete_scores(codes, factors, test_codes, test_factors,
                                      rng)
    top = np.sort(scores, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


# DCI -------------------------------------------------------------------------


def _dci_from_importance(importance) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix [D, K] [5].

    As disentanglement_lib: 1e-11 is added before the entropies; dimensions
    (factors) are weighted by their share of the total importance, and all
    equally if every importance is 0. Gradient-boosting importances sum to 1
    for each factor, so completeness is then the plain mean over factors.

    Args:
        importance: Non-negative importances R_jk, `[num_codes, num_factors]`.

    Returns:
        `(disentanglement, completeness)`.
    """
    importance = np.asarray(importance, np.float64)
    num_codes, num_factors = importance.shape
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=num_factors)
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=num_codes)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    code_weights = weights.sum(axis=1) / weights.sum()
    factor_weights = weights.sum(axis=0) / weights.sum()
    return (float(np.sum(per_code * code_weights)),
            float(np.sum(per_factor * factor_weights)))


def dci(codes, factors, *, test_codes=None, test_factors=None, seed=0) -> dict:
    """Disentanglement, completeness and informativeness [5].

    As disentanglement_lib: one `GradientBoostingClassifier()` (scikit-learn
    defaults: 100 stages of depth-3 trees) per factor predicts v_k from all
    of z; its `feature_importances_` are the column R_.k of the importance
    matrix. disentanglement_lib reports informativeness as the classifiers'
    accuracy (higher is better), not as the prediction error of [5]; so does
    this function.

    Args:
        codes: Representations `[N, D]` (disentanglement_lib: 10,000
            training and 5,000 test points).
        factors: Integer-valued factors `[N, K]`.
        test_codes, test_factors: Held-out points; when None a random
            `TEST_FRACTION` of the given points is held out, chosen by `seed`.
        seed: int or `np.random.Generator` for the split and the classifiers.

    Returns:
        A dict with the floats `disentanglement`, `completeness`,
        `informativeness` (mean test accuracy) and `informativeness_train`,
        and the arrays `informativeness_per_factor` (test accuracy, [K]) and
        `importance_matrix` ([D, K]).
    """
    codes, factors = _check_codes(codes, factors, integer_factors=True)
    rng = _generator(seed)
    codes, factors, test_codes, test_factors = _split(
        codes, factors, test_codes, test_factors, rng, integer_factors=True)
    _check_varied(factors, "the training points")
    importance = np.zeros([codes.shape[1], factors.shape[1]])
    train_accuracy = np.zeros(factors.shape[1])
    test_accuracy = np.zeros(factors.shape[1])
    for k in range(factors.shape[1]):
        model = GradientBoostingClassifier(random_state=_sklearn_seed(rng))
        model.fit(codes, factors[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_accuracy[k] = np.mean(model.predict(codes) == factors[:, k])
        test_accuracy[k] = np.mean(model.predict(test_codes) == test_factors[:, k])
    disentanglement, completeness = _dci_from_importance(importance)
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness": float(test_accuracy.mean()),
            "informativeness_train": float(train_accuracy.mean()),
            "informativeness_per_factor": test_accuracy,
            "importance_matrix": importance}


# Scores on sampled data --------------------------------------------------------


def _check_sampled(sampler, batch_size: int, num_train: int,
                   num_eval: int) -> None:
    """Validates the arguments shared by the sampled scores."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (it pairs or compares "
                         f"observations); got {batch_size}.")
    if num_train < 1 or num_eval < 1:
        raise ValueError(f"num_train and num_eval must be >= 1; got "
                         f"{num_train} and {num_eval}.")
    if sampler.num_factors < 2:
        raise ValueError(f"The sampler needs >= 2 factors to tell apart; got "
                         f"{sampler.num_factors}.")


def _represent(representation: Representation, sampler, factors: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """Codes `[n, D]` of the observations of `factors` `[n, K]`."""
    codes = []
    for start in range(0, len(factors), _OBSERVATIONS_PER_CALL):
        block = factors[start:start + _OBSERVATIONS_PER_CALL]
        z = np.asarray(representation(
            sampler.sample_observations_from_factors(block, rng)))
        if z.ndim != 2 or len(z) != len(block):
            raise ValueError(f"representation must map [n, ...] observations "
                             f"to [n, D] codes; got {z.shape} for n = "
                             f"{len(block)}.")
        codes.append(z.astype(np.float64))
    return np.concatenate(codes)


def _fixed_factor_batches(sampler, num_points: int, batch_size: int,
                          rng: np.random.Generator):
    """Yields (k [P], factors [P, batch_size, K]) with random other factors.

    The factor k of each point is drawn uniformly; the caller fixes it.
    """
    points_per_call = max(1, _OBSERVATIONS_PER_CALL // batch_size)
    for start in range(0, num_points, points_per_call):
        count = min(points_per_call, num_points - start)
        k = rng.integers(sampler.num_factors, size=count)
        factors = np.asarray(sampler.sample_factors(count * batch_size, rng))
        yield k, factors.reshape(count, batch_size, sampler.num_factors)


def _beta_vae_features(representation, sampler, num_points: int,
                       batch_size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Features mean_b |z1_b - z2_b| `[num_points, D]` and labels k."""
    features, labels = [], []
    for k, first in _fixed_factor_batches(sampler, num_points, batch_size, rng):
        second = np.asarray(sampler.sample_factors(first.shape[0] * batch_size,
                                                   rng)).reshape(first.shape)
        points = np.arange(len(k))
        second[points, :, k] = first[points, :, k]  # Pairs share factor k.
        num_factors = first.shape[-1]
        z1 = _represent(representation, sampler,
                        first.reshape(-1, num_factors), rng)
        z2 = _represent(representation, sampler,
                        second.reshape(-1, num_factors), rng)
        difference = np.abs(z1 - z2).reshape(len(k), batch_size, -1)
        features.append(difference.mean(axis=1))
        labels.append(k)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(representation: Representation, sampler: GroundTruthSampler,
                   *, batch_size: int = 64, num_train: int = 10000,
                   num_eval: int = 5000, seed=0) -> float:
    """The beta-VAE disentanglement metric [1], as disentanglement_lib.

    Each point draws a factor k uniformly and `batch_size` pairs of
    observations that share factor k (their other factors are independent
    and uniform); its feature is the mean over pairs of |z1 - z2| and its
    label is k. A logistic regression with scikit-learn's defaults (C = 1),
    as disentanglement_lib's `LogisticRegression()`, is trained on
    `num_train` points; the score is its accuracy on `num_eval` new points.
    Today's default solver is lbfgs (multinomial; in 2019 it was liblinear,
    one-vs-rest); max_iter is raised from 100 to 1000 so that it converges
    on unscaled codes. Defaults are
    disentanglement_lib's: batch_size 64, 10,000 training and 5,000
    evaluation points.

    Args:
        representation: `observations [n, ...] -> codes [n, D]`, e.g. the
            posterior mean.
        sampler: The ground-truth data (`GroundTruthSampler`).
        batch_size: Pairs per point, >= 2.
        num_train: Training points of the classifier.
        num_eval: Evaluation points.
        seed: int or `np.random.Generator`.

    Returns:
        The evaluation accuracy, in [0, 1]; chance is 1/K.
    """
    _check_sampled(sampler, batch_size, num_train, num_eval)
    rng = _generator(seed)
    train_x, train_y = _beta_vae_features(representation, sampler, num_train,
                                          batch_size, rng)
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"All {num_train} training points fixed the same "
                         f"factor; use a larger num_train.")
    model = linear_model.LogisticRegression(random_state=_sklearn_seed(rng),
                                            max_iter=1000)
    model.fit(train_x, train_y)
    eval_x, eval_y = _beta_vae_features(representation, sampler, num_eval,
                                        batch_size, rng)
    return float(np.mean(model.predict(eval_x) == eval_y))


def _factor_vae_votes(representation, sampler, num_points: int,
                      batch_size: int, rng, variances: np.ndarray,
                      active: np.ndarray) -> np.ndarray:
    """Votes `[K, D]`: (fixed factor, dimension of least normalised variance)."""
    votes = np.zeros([sampler.num_factors, len(variances)], np.int64)
    active_dims = np.nonzero(active)[0]
    for k, factors in _fixed_factor_batches(sampler, num_points, batch_size,
                                            rng):
        points = np.arange(len(k))
        factors[points, :, k] = factors[points, :1, k]  # Fix k over the batch.
        z = _represent(representation, sampler,
                       factors.reshape(-1, factors.shape[-1]), rng)
        z = z.reshape(len(k), batch_size, -1)[:, :, active_dims]
        normalised = np.var(z, axis=1, ddof=1) / variances[active_dims]
        np.add.at(votes, (k, active_dims[np.argmin(normalised, axis=1)]), 1)
    return votes


def factor_vae_score(representation: Representation,
                     sampler: GroundTruthSampler, *, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000,
                     prune_threshold: float = 0.05, seed=0) -> float:
    """The FactorVAE disentanglement metric [2], as disentanglement_lib.

    Each code dimension is normalised by its standard deviation over
    `num_variance_estimate` random observations; dimensions whose standard
    deviation is below `prune_threshold` (disentanglement_lib's
    `prune_dims.threshold = 0.05`, applied to the standard deviation, i.e. a
    variance below 0.0025) have collapsed to the prior and are left out.
    Each vote fixes a uniformly drawn factor k over `batch_size`
    observations; the active dimension with the least variance of its
    normalised codes votes for k. A majority-vote classifier (each dimension
    predicts the factor it got most training votes for) is trained on
    `num_train` votes; the score is its accuracy on `num_eval` new votes.
    Defaults are disentanglement_lib's: batch_size 64, 10,000 training and
    5,000 evaluation votes, 10,000 points for the variances.

    Votes are indexed by the dimension itself; disentanglement_lib indexes
    them by the position among the active dimensions, a relabelling that
    gives the same accuracy.

    Args:
        representation: `observations [n, ...] -> codes [n, D]`, e.g. the
            posterior mean.
        sampler: The ground-truth data (`GroundTruthSampler`).
        batch_size: Observations per vote, >= 2.
        num_train: Training votes.
        num_eval: Evaluation votes.
        num_variance_estimate: Observations for the global variances, >= 2.
        prune_threshold: Smallest standard deviation of an active dimension.
        seed: int or `np.random.Generator`.

    Returns:
        The evaluation accuracy, in [0, 1]; chance is 1/K. 0.0 when every
        dimension has collapsed: there is then no dimension to vote
        (disentanglement_lib returns 0 too).
    """
    _check_sampled(sampler, batch_size, num_train, num_eval)
    if num_variance_estimate < 2:
        raise ValueError(f"num_variance_estimate must be >= 2 (a variance "
                         f"needs two points); got {num_variance_estimate}.")
    rng = _generator(seed)
    factors = np.asarray(sampler.sample_factors(num_variance_estimate, rng))
    variances = np.var(_represent(representation, sampler, factors, rng),
                       axis=0, ddof=1)
    active = np.sqrt(variances) >= prune_threshold
    if not active.any():
        return 0.0
    train_votes = _factor_vae_votes(representation, sampler, num_train,
                                    batch_size, rng, variances, active)
    classifier = np.argmax(train_votes, axis=0)  # [D]: the factor of each dim.
    eval_votes = _factor_vae_votes(representation, sampler, num_eval,
                                   batch_size, rng, variances, active)
    correct = eval_votes[classifier, np.arange(len(classifier))]
    return float(correct.sum() / eval_votes.sum())


# Every score -------------------------------------------------------------------


def all_scores(representation: Representation, observations, factors,
               sampler: GroundTruthSampler, *, num_train: int = NUM_TRAIN,
               num_test: int = NUM_TEST,
               batch_size: int = SAMPLED_BATCH_SIZE, seed=0) -> dict:
    """Every metric of this module for one representation.

    MIG, SAP and DCI score the codes of `observations` against their
    `factors`: `num_train + num_test` of them drawn without replacement
    (disentanglement_lib: 10,000 training and 5,000 test points), or all of
    them when there are fewer, then held out in the proportion
    `num_test : num_train`. MIG uses the training points, SAP and DCI train
    their classifiers on those and test them on the held-out points. The
    beta-VAE and FactorVAE scores draw from `sampler`: `num_train` training
    and `num_test` evaluation points of `batch_size` observations each, and
    `num_train` observations for FactorVAE's variances. Each score has its
    own seed stream (derived from `seed`), so one does not depend on the
    others. The time each score takes is logged.

    Args:
        representation: `observations [n, ...] -> codes [n, D]`, D >= 2.
        observations: Observations `[N, ...]`, e.g. a held-out split.
        factors: Their integer factors `[N, K]`, aligned with them.
        sampler: The same ground truth (`GroundTruthSampler`).
        num_train: Training points (>= 2).
        num_test: Test points (>= 1).
        batch_size: Observations per beta-VAE point or FactorVAE vote.
        seed: A non-negative int.

    Returns:
        A JSON-serialisable dict: the floats `mig`, `sap`,
        `dci_disentanglement`, `dci_completeness`, `dci_informativeness`,
        `beta_vae`, `factor_vae`; `dci_informativeness_per_factor` [K] and
        `dci_importance_matrix` [D][K] as lists; the sample sizes
        `available_points` (N), `train_points`, `test_points`,
        `sampled_train_points`, `sampled_test_points`, `batch_size`; and
        `note`, a sentence saying that all N points were used because
        there were fewer than asked for (None otherwise).

    Raises:
        ValueError: For bad sizes, or codes and factors that do not fit.
    """
    observations, factors = np.asarray(observations), np.asarray(factors)
    if num_train < 2 or num_test < 1 or batch_size < 2:
        raise ValueError(f"num_train must be >= 2, num_test >= 1 and batch_size "
                         f">= 2; got {num_train}, {num_test} and {batch_size}.")
    if len(observations) != len(factors):
        raise ValueError(f"observations and factors must have the same length; "
                         f"got {len(observations)} and {len(factors)}.")
    if factors.ndim != 2 or factors.shape[1] != sampler.num_factors:
        raise ValueError(f"factors must have shape [N, {sampler.num_factors}] like "
                         f"the sampler's; got {factors.shape}.")
    available, wanted = len(observations), num_train + num_test

    def stream(i: int) -> np.random.Generator:
        return np.random.default_rng([seed, i])

    order = stream(0).permutation(available)
    note = None
    if available >= wanted:
        order, num_held_out = order[:wanted], num_test
    else:
        num_held_out = min(max(round(available * num_test / wanted), 1),
                           available - 2)
        note = (f"{available} points, fewer than {num_train} + {num_test}: "
                f"MIG, SAP and DCI use all of them ({num_held_out} held out "
                f"for testing)")
    if num_held_out < 1:
        raise ValueError(f"Too few points ({available}) for MIG, SAP and DCI; "
                         f"pass at least 3.")
    test, train = order[:num_held_out], order[num_held_out:]
    codes = _represent_observations(representation, observations[train])
    test_codes = _represent_observations(representation, observations[test])
    train_factors, test_factors = factors[train], factors[test]
    held_out = dict(test_codes=test_codes, test_factors=test_factors)
    sampled = dict(batch_size=batch_size, num_train=num_train,
                   num_eval=num_test)
    scores = {}

    def score(name: str, compute: Callable[[], float | dict]) -> None:
        start = time.perf_counter()
        result = compute()
        scores.update(result if isinstance(result, dict) else {name: result})
        logging.info("Disentanglement: %s computed in %.1f s.", name,
                     time.perf_counter() - start)

    score("mig", lambda: mig(codes, train_factors))
    score("sap", lambda: sap(codes, train_factors, **held_out, seed=stream(2)))
    score("dci", lambda: _dci_scores(codes, train_factors, held_out, stream(3)))
    score("beta_vae", lambda: beta_vae_score(representation, sampler, **sampled,
                                             seed=stream(4)))
    score("factor_vae", lambda: factor_vae_score(
        representation, sampler, **sampled, num_variance_estimate=num_train,
        seed=stream(5)))
    return dict(
        scores, available_points=int(available), train_points=len(train),
        test_points=len(test), sampled_train_points=int(num_train),
        sampled_test_points=int(num_test), batch_size=int(batch_size),
        note=note)


def _dci_scores(codes, factors, held_out: dict, rng) -> dict:
    """`dci`'s results as `all_scores` reports them (JSON-serialisable)."""
    result = dci(codes, factors, **held_out, seed=rng)
    return {"dci_disentanglement": result["disentanglement"],
            "dci_completeness": result["completeness"],
            "dci_informativeness": result["informativeness"],
            "dci_informativeness_per_factor":
                result["informativeness_per_factor"].tolist(),
            "dci_importance_matrix": result["importance_matrix"].tolist()}


def _represent_observations(representation: Representation,
                            observations: np.ndarray) -> np.ndarray:
    """Codes `[n, D]` of observations `[n, ...]`, in calls of at most
    `_OBSERVATIONS_PER_CALL`."""
    step = _OBSERVATIONS_PER_CALL
    return np.concatenate([
        np.asarray(representation(observations[i:i + step]), np.float64)
        for i in range(0, len(observations), step)])
