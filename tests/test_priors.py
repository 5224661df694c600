"""The mixture priors' log-density against an independent float64 computation."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfpvae import priors

tfd = tfp.distributions


def _exact_log_prob(z, loc, scale, log_weights):
    """log sum_k w_k N(z; mu_k, diag(s_k^2)) in float64 NumPy, term by term."""
    z, loc, scale = (np.asarray(a, np.float64) for a in (z, loc, scale))
    diff = (z[..., None, :] - loc) / scale  # [..., K, D]
    log_components = (-0.5 * np.sum(diff ** 2, -1) - np.sum(np.log(scale), -1)
                      - 0.5 * loc.shape[-1] * math.log(2 * math.pi))
    a = log_components + log_weights
    m = a.max(-1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(-1, keepdims=True)))[..., 0]


def _mixture(rng, components=200, latent_dim=20):
    """Locations ~ N(0, 2^2), scales from 0.02 to 1 (as posteriors have)."""
    loc = rng.normal(0, 2, (components, latent_dim)).astype(np.float32)
    scale = np.exp(rng.uniform(math.log(0.02), 0, (components, latent_dim)))
    logits = rng.normal(size=components).astype(np.float32)
    return loc, scale.astype(np.float32), logits


def _points(rng, loc, scale, shape):
    """Points near random components, at 1, 3 and 10 standard deviations."""
    k = rng.integers(0, len(loc), shape)
    spread = rng.choice([1.0, 3.0, 10.0], (*shape, 1))
    noise = rng.normal(size=(*shape, loc.shape[-1]))
    return (loc[k] + spread * scale[k] * noise).astype(np.float32)


def test_diagonal_mixture_log_prob_matches_float64_sum_over_components():
    rng = np.random.default_rng(0)
    loc, scale, logits = _mixture(rng)
    z = _points(rng, loc, scale, (3, 40))
    mixture = priors._DiagonalGaussianMixture(  # pylint: disable=protected-access
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale))
    log_weights = logits - np.log(np.exp(logits.astype(np.float64)).sum())
    exact = _exact_log_prob(z, loc, scale, log_weights)
    got = mixture.log_prob(z).numpy()
    assert got.shape == (3, 40)
    assert got.min() < -1000 < got.max()  # Far and near points both tested.
    # Within float32 resolution of the value, far from the 0.05 nats that
    # the float32 expansion loses here.
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=2e-3)
    tfp_float32 = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale))
    np.testing.assert_allclose(got, tfp_float32.log_prob(z).numpy(),
                               rtol=2e-6, atol=2e-3)


def test_diagonal_mixture_gradients_match_tfp():
    rng = np.random.default_rng(1)
    loc0, scale0, logits0 = _mixture(rng, components=30, latent_dim=5)
    z0 = _points(rng, loc0, scale0, (8,))
    grads = []
    for cls in (tfd.MixtureSameFamily,
                priors._DiagonalGaussianMixture):  # pylint: disable=protected-access
        loc, scale, logits, z = (tf.Variable(tf.constant(a, tf.float64))
                                 for a in (loc0, scale0, logits0, z0))
        with tf.GradientTape() as tape:
            mixture = cls(
                mixture_distribution=tfd.Categorical(logits=logits),
                components_distribution=tfd.MultivariateNormalDiag(
                    loc=loc, scale_diag=scale))
            total = tf.reduce_sum(mixture.log_prob(z))
        grads.append(tape.gradient(total, [loc, scale, logits, z]))
    for expected, got in zip(*grads):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6,
                                   atol=1e-6)


@pytest.mark.parametrize("name", ["mixture", "vamp"])
def test_priors_use_the_matmul_log_prob_and_agree_with_tfp(name):
    latent_dim, components = 4, 7
    if name == "mixture":
        prior = priors.MixturePrior(latent_dim, components=components, seed=3)
    else:
        dense = tf.constant(np.random.default_rng(2).normal(
            size=(6, 2 * latent_dim)), tf.float32)

        def encode(x):
            h = tf.matmul(tf.reshape(x, [-1, 6]), dense)
            return tfd.MultivariateNormalDiag(
                loc=h[:, :latent_dim], scale_diag=tf.nn.softplus(h[:, latent_dim:]))

        prior = priors.VampPrior(latent_dim, (2, 3), encode, components=components)
    p = prior()
    assert isinstance(p, priors._DiagonalGaussianMixture)  # pylint: disable=protected-access
    z = p.sample(50, seed=4)
    reference = tfd.MixtureSameFamily(
        mixture_distribution=p.mixture_distribution,
        components_distribution=p.components_distribution)
    np.testing.assert_allclose(p.log_prob(z).numpy(), reference.log_prob(z).numpy(),
                               rtol=1e-5, atol=1e-4)
