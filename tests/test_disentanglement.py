"""Disentanglement metrics against known answers: perfect codes score near the
maximum, mixed or unrelated codes near the minimum, and hand computations."""

import math

import numpy as np
import pytest

from tfpvae import disentanglement as dis

#: Factor sizes of the synthetic grid.
SIZES = (2, 3, 3)


def _factors(n=900, sizes=SIZES, seed=0) -> np.ndarray:
    """Integer factors [n, K] drawn uniformly from the grid."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, n) for size in sizes], axis=1)


def _monotone(v: np.ndarray) -> np.ndarray:
    """A strictly monotone transform of each factor column."""
    v = v.astype(np.float64)
    return np.stack([np.exp(v[:, 0]), (v[:, 1] - 1.2) ** 3,
                     -np.exp(0.5 * v[:, 2])], axis=1)


def _hadamard_mix(v: np.ndarray) -> np.ndarray:
    """Codes that mix every factor into every code with equal weight.

    The 4 x 4 Hadamard matrix / 2 is orthogonal with entries +-1/2.
    """
    hadamard = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1],
                         [1, -1, -1, 1]]) / 2.0
    return (v - v.mean(axis=0)) @ hadamard.T


def _chance(sizes=SIZES) -> np.ndarray:
    return 1.0 / np.asarray(sizes)


class GridSampler:
    """Ground-truth data whose observations are the factors themselves
    (after an optional monotone transform)."""

    def __init__(self, sizes=(2, 3, 4), transform=None):
        self.factor_sizes = sizes
        self.num_factors = len(sizes)
        self.transform = transform or (lambda v: v.astype(np.float64))

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], 1)

    def sample_observations_from_factors(self, factors, rng):
        del rng
        return self.transform(factors)


def _identity(x):
    return np.asarray(x, np.float64)


def _noise(dim=3, seed=1):
    """A representation that ignores its input: codes independent of factors."""
    rng = np.random.default_rng(seed)
    return lambda x: rng.normal(size=(len(x), dim))


SAMPLED = dict(batch_size=16, num_train=300, num_eval=300)


# MIG ---------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [_identity, _monotone])
def test_mig_of_perfect_codes_is_near_one(transform):
    factors = _factors()
    assert dis.mig(transform(factors), factors) > 0.97


def test_mig_of_mixed_or_unrelated_codes_is_near_zero():
    factors = _factors(sizes=(3, 3, 3, 3))
    assert dis.mig(_hadamard_mix(factors), factors) < 0.05
    noise = np.random.default_rng(1).normal(size=(900, 4))
    assert dis.mig(noise, factors) < 0.05


def _entropy_of_counts(*columns) -> float:
    """-sum p log p (nats) of the joint empirical distribution of columns."""
    _, counts = np.unique(np.stack(columns, 1), axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def test_mig_matches_a_hand_computation():
    # 16 points: each (v0, v1) in {0,1}^2 four times. Codes: z0 = v0,
    # z1 = v0 + v1, z2 = v1 with one point in four flipped (independently of
    # v0). Each code value falls in its own histogram bin.
    v = np.repeat([[0, 0], [0, 1], [1, 0], [1, 1]], 4, axis=0)
    flip = np.tile([1, 0, 0, 0], 4)
    z = np.stack([v[:, 0], v[:, 0] + v[:, 1], v[:, 1] ^ flip], 1).astype(float)

    def information(a, b):
        return (_entropy_of_counts(a) + _entropy_of_counts(b)
                - _entropy_of_counts(a, b))

    ln2 = math.log(2.0)
    binary_entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    table = np.array([[information(z[:, j], v[:, k]) for k in range(2)]
                      for j in range(3)])
    np.testing.assert_allclose(table, [[ln2, 0], [ln2 / 2, ln2 / 2],
                                       [0, ln2 - binary_entropy]], atol=1e-12)
    # v0: z0 (ln 2) then z1 (ln 2 / 2); v1: z1 (ln 2 / 2) then z2.
    expected = 0.5 * ((ln2 - ln2 / 2) / ln2
                      + (ln2 / 2 - (ln2 - binary_entropy)) / ln2)
    assert expected == pytest.approx(0.40563906, abs=1e-8)
    assert dis.mig(z, v) == pytest.approx(expected, abs=1e-12)


def test_mig_discretises_into_equal_width_bins():
    # Every (v0, v1) in {0, 1, 2} x {0, 1} twice. z0 is v0 with the value 2
    # moved to 1.04: 20 equal-width bins of [0, 1.04] put 1 and 1.04 in the
    # last bin, so z0 tells only {0} from {1, 2}; 200 bins separate them.
    v = np.array([[a, b] for a in range(3) for b in range(2)] * 2)
    z = np.stack([np.where(v[:, 0] == 2, 1.04, v[:, 0]), v[:, 1]], 1)
    ln2, ln3 = math.log(2.0), math.log(3.0)
    # I(z0; v0) = H(v0) - H(v0 | z0) = ln 3 - (2/3) ln 2; v1 is kept whole.
    merged = 0.5 * ((ln3 - 2 / 3 * ln2) / ln3 + 1.0)
    assert dis.mig(z, v, num_bins=20) == pytest.approx(merged, abs=1e-12)
    assert dis.mig(z, v, num_bins=200) == pytest.approx(1.0, abs=1e-12)


# SAP ---------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [_identity, _monotone])
def test_sap_of_perfect_codes_is_near_its_maximum(transform):
    # A linear classifier on one dimension (one-vs-rest) reliably separates
    # two ordered classes only, so the factors are binary here.
    factors = _factors(sizes=(2, 2, 2))
    # The right dimension is classified perfectly, the others at chance.
    assert dis.sap(transform(factors), factors) == pytest.approx(0.5,
                                                                 abs=0.05)
    continuous = dis.sap(factors.astype(float), factors,
                         continuous_factors=True)
    assert continuous > 0.98


def test_sap_of_mixed_or_unrelated_codes_is_near_zero():
    factors = _factors(sizes=(3, 3, 3, 3))
    mixed = _hadamard_mix(factors)
    assert dis.sap(mixed, factors) < 0.08
    assert dis.sap(mixed, factors, continuous_factors=True) < 0.05
    noise = np.random.default_rng(1).normal(size=(900, 4))
    assert dis.sap(noise, factors) < 0.08


def test_sap_continuous_is_the_gap_of_squared_correlations():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 2))
    z = np.stack([v[:, 0], v[:, 0] + v[:, 1], rng.normal(size=500)], 1)
    r2 = np.corrcoef(z.T, v.T)[:3, 3:] ** 2  # [codes, factors]
    top = np.sort(r2, axis=0)
    expected = np.mean(top[-1] - top[-2])
    assert dis.sap(z, v, continuous_factors=True) == pytest.approx(expected)


def test_sap_uses_given_test_arrays_and_is_seeded():
    factors = _factors()
    codes = factors + np.random.default_rng(2).normal(0, 0.3, factors.shape)
    assert dis.sap(codes, factors, seed=3) == dis.sap(codes, factors, seed=3)
    # Test points whose factors are shuffled against their codes: the best
    # dimension drops to chance, so the gap vanishes.
    shuffled = np.random.default_rng(4).permutation(factors)
    assert dis.sap(codes, factors, test_codes=codes,
                   test_factors=shuffled) < 0.1


# DCI ---------------------------------------------------------------------------


def test_dci_entropies_match_a_hand_computation():
    importance = np.array([[0.6, 0.2], [0.4, 0.0], [0.0, 0.8]])  # [D=3, K=2]

    def entropy(p, base):
        p = np.asarray(p) / np.sum(p)
        p = p[p > 0]
        return -np.sum(p * np.log(p)) / math.log(base)

    per_code = [1 - entropy(row, 2) for row in importance]      # [0.189, 1, 1]
    code_weight = importance.sum(1) / importance.sum()          # [0.4, 0.2, 0.4]
    per_factor = [1 - entropy(col, 3) for col in importance.T]  # [0.387, 0.545]
    expected_d = float(np.dot(per_code, code_weight))
    expected_c = float(np.mean(per_factor))  # Columns sum to 1: plain mean.
    assert expected_d == pytest.approx(0.67549, abs=1e-5)
    assert expected_c == pytest.approx(0.46596, abs=1e-5)
    d, c = dis._dci_from_importance(importance)  # pylint: disable=protected-access
    assert d == pytest.approx(expected_d, abs=1e-8)
    assert c == pytest.approx(expected_c, abs=1e-8)
    # One factor per code and one code per factor; and all spread evenly.
    eye = dis._dci_from_importance(np.eye(3))  # pylint: disable=protected-access
    flat = dis._dci_from_importance(np.ones([3, 3]))  # pylint: disable=protected-access
    np.testing.assert_allclose(eye, [1, 1], atol=1e-8)
    np.testing.assert_allclose(flat, [0, 0], atol=1e-8)


@pytest.mark.parametrize("transform", [_identity, _monotone])
def test_dci_of_perfect_codes_is_near_one(transform):
    factors = _factors()
    scores = dis.dci(transform(factors), factors)
    assert scores["disentanglement"] > 0.95
    assert scores["completeness"] > 0.95
    assert scores["informativeness"] > 0.98
    importance = scores["importance_matrix"]
    assert importance.shape == (3, 3)
    np.testing.assert_array_equal(np.argmax(importance, axis=0), [0, 1, 2])


def test_dci_of_mixed_codes_is_informative_but_not_disentangled():
    factors = _factors(sizes=(3, 3, 3, 3))
    scores = dis.dci(_hadamard_mix(factors), factors)
    assert scores["disentanglement"] < 0.1
    assert scores["completeness"] < 0.1
    assert scores["informativeness"] > 0.8  # The mixture is invertible.


def test_dci_of_unrelated_codes_is_at_chance():
    factors = _factors()
    noise = np.random.default_rng(1).normal(size=(900, 3))
    scores = dis.dci(noise, factors)
    assert scores["disentanglement"] < 0.1
    assert scores["completeness"] < 0.1
    np.testing.assert_allclose(scores["informativeness_per_factor"], _chance(),
                               atol=0.1)
    assert scores["informativeness"] == pytest.approx(_chance().mean(), abs=0.07)
    assert scores["informativeness_train"] > 0.6  # The trees overfit noise.


def test_dci_of_codes_that_drop_a_factor():
    factors = _factors()
    full = dis.dci(factors.astype(float), factors)
    dropped = dis.dci(factors[:, :2].astype(float), factors)  # No v2.
    per_factor = dropped["informativeness_per_factor"]
    np.testing.assert_allclose(per_factor[:2], 1.0)
    assert per_factor[2] == pytest.approx(1 / 3, abs=0.1)  # Chance.
    assert dropped["informativeness"] == pytest.approx(
        (2 + 1 / 3) / 3, abs=0.05)
    # v2's importance spreads over the two codes, which hold nothing of it.
    assert dropped["completeness"] < full["completeness"] - 0.2
    assert dropped["disentanglement"] < full["disentanglement"] - 0.1


def test_dci_is_seeded_and_uses_given_test_arrays():
    factors = _factors(n=300)
    codes = factors + np.random.default_rng(2).normal(0, 0.5, factors.shape)
    first, again = dis.dci(codes, factors, seed=5), dis.dci(codes, factors, seed=5)
    np.testing.assert_array_equal(first["importance_matrix"],
                                  again["importance_matrix"])
    held_out = _factors(n=200, seed=9)
    scores = dis.dci(codes, factors, test_codes=held_out.astype(float),
                     test_factors=held_out)
    assert scores["informativeness"] > 0.95  # Noise-free test points.


# beta-VAE and FactorVAE scores ------------------------------------------------------


@pytest.mark.parametrize("transform", [None, lambda v: np.exp(v) - v ** 3 / 9])
def test_sampled_scores_of_perfect_codes_are_near_one(transform):
    sampler = GridSampler(transform=transform)
    assert dis.beta_vae_score(_identity, sampler, **SAMPLED) > 0.97
    assert dis.factor_vae_score(_identity, sampler, num_variance_estimate=500,
                                **SAMPLED) == 1.0


def test_sampled_scores_of_unrelated_codes_are_at_chance():
    sampler = GridSampler()
    beta = dis.beta_vae_score(_noise(), sampler, **SAMPLED)
    factor = dis.factor_vae_score(_noise(), sampler, num_variance_estimate=500,
                                  **SAMPLED)
    assert beta == pytest.approx(1 / 3, abs=0.1)
    assert factor == pytest.approx(1 / 3, abs=0.1)


def test_factor_vae_score_prunes_collapsed_dimensions():
    sampler = GridSampler()

    def with_collapsed(x):  # A constant code between the real ones.
        return np.c_[x[:, :1], np.full(len(x), 0.3), x[:, 1:],
                     0.01 * np.random.default_rng(0).normal(size=len(x))]

    # Unpruned, the constant dimension (variance 0 / 0) would take every vote.
    assert dis.factor_vae_score(with_collapsed, sampler,
                                num_variance_estimate=500, **SAMPLED) == 1.0
    collapsed = dis.factor_vae_score(lambda x: np.zeros([len(x), 4]), sampler,
                                     num_variance_estimate=500, **SAMPLED)
    assert collapsed == 0.0


def _noisy(std):
    """The factors plus fresh Gaussian noise at every call (seeded)."""
    rng = np.random.default_rng(7)
    return lambda x: x + rng.normal(0, std, x.shape)


def test_sampled_scores_are_seeded_and_fall_with_noise():
    sampler = GridSampler()
    for score in (dis.beta_vae_score, dis.factor_vae_score):
        first = score(_noisy(1.0), sampler, seed=2, **SAMPLED)
        assert first == score(_noisy(1.0), sampler,
                              seed=np.random.default_rng(2), **SAMPLED)
        assert 0.6 < first < 0.9  # Noise makes some mistakes,
        assert score(_noisy(2.0), sampler, seed=2, **SAMPLED) < first - 0.1


# Errors ------------------------------------------------------------------------


def test_errors_name_the_problem_and_the_fix():
    factors = _factors(n=20)
    codes = factors.astype(float)
    with pytest.raises(ValueError, match="same length"):
        dis.mig(codes[:10], factors)
    with pytest.raises(ValueError, match="same length"):
        dis.sap(codes, factors[:10])
    with pytest.raises(ValueError, match="integer-valued.*discretise"):
        dis.mig(codes, factors + 0.5)
    with pytest.raises(ValueError, match="integer-valued.*discretise"):
        dis.dci(codes, factors * 0.1)
    with pytest.raises(ValueError, match=r"codes must have shape \[N, num_codes\]"):
        dis.mig(codes[:, 0], factors)
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        dis.sap(codes[:, :1], factors)
    with pytest.raises(ValueError, match="Factor 1 is constant"):
        dis.mig(codes, np.c_[factors[:, 0], np.zeros(20, int)])
    with pytest.raises(ValueError, match="NaN"):
        dis.mig(np.where(codes == 0, np.nan, codes), factors)
    with pytest.raises(ValueError, match="both test_codes and test_factors"):
        dis.dci(codes, factors, test_codes=codes)
    with pytest.raises(ValueError, match="test_codes must have 3 code"):
        dis.dci(codes, factors, test_codes=codes[:, :2], test_factors=factors)
    for score in (dis.beta_vae_score, dis.factor_vae_score):
        with pytest.raises(ValueError, match="batch_size must be >= 2"):
            score(_identity, GridSampler(), batch_size=1)
    with pytest.raises(ValueError, match=r"to \[n, D\] codes"):
        dis.beta_vae_score(lambda x: x[:, 0], GridSampler(), **SAMPLED)
    with pytest.raises(ValueError, match="seed must be an int"):
        dis.sap(codes, factors, seed=np.random.RandomState(0))
