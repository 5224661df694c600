"""The bounds against closed forms: KL, and a linear-Gaussian model's log p(x).

Linear-Gaussian model: z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D). Then
p(x) = N(x; b, W W^T + sigma^2 I) exactly, and the exact posterior is
N(m, S) with S = (I + W^T W / sigma^2)^-1, m = S W^T (x - b) / sigma^2.
W has orthogonal columns, so S is diagonal and the exact posterior is in
the encoder's family: plugged in, every importance weight equals p(x).
"""

import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

import tfpvae

from conftest import linear_gaussian_vae

LATENT, DIM, SIGMA = 3, 5, 0.5


class LinearGaussian:
    """The model's parameters and closed forms (numpy, independent of tfpvae)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        self.c = np.array([2.0, 1.0, 0.5])
        self.w = (q[:, :LATENT] * self.c).astype(np.float32)  # [D, d]
        self.b = rng.normal(size=DIM).astype(np.float32)
        self.s = 1.0 / (1.0 + self.c ** 2 / SIGMA ** 2)  # diagonal of S
        self.x = self.sample(rng, 40)

    def sample(self, rng, n):
        z = rng.normal(size=(n, LATENT))
        return (z @ self.w.T + self.b + SIGMA * rng.normal(size=(n, DIM))
                ).astype(np.float32)

    def log_px(self, x):
        cov = self.w @ self.w.T + SIGMA ** 2 * np.eye(DIM)
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(x)

    def posterior(self, x):
        return self.s * ((x - self.b) @ self.w) / SIGMA ** 2, np.sqrt(self.s)


def linear_vae(lg, loc_shift=0.0, scale_mult=1.0):
    """A VAE whose encoder is the exact posterior, optionally perturbed."""
    return linear_gaussian_vae(lg.w, lg.b, lg.s, SIGMA, loc_shift, scale_mult)


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


def test_exact_posterior_makes_every_bound_equal_log_px(lg):
    model = linear_vae(lg)
    loc, scale = lg.posterior(lg.x)
    q = model.encode(lg.x)
    np.testing.assert_allclose(q.mean(), loc, atol=1e-5)
    np.testing.assert_allclose(q.stddev(), np.broadcast_to(scale, loc.shape),
                               rtol=1e-4)
    log_px = lg.log_px(lg.x)
    # Monte Carlo KL: log w = log p(x, z) - log q(z|x) = log p(x) at every z.
    out = model.elbo(lg.x, kl="mc", n_samples=3, seed=1)
    np.testing.assert_allclose(out.elbo, log_px, atol=2e-3)
    # Analytic KL: equal in expectation (the distortion term still varies).
    out = model.elbo(lg.x, kl="analytic", n_samples=4000, seed=1)
    np.testing.assert_allclose(out.elbo, log_px, atol=0.1)
    assert abs(np.mean(out.elbo) - np.mean(log_px)) < 0.02
    np.testing.assert_allclose(model.iwae(lg.x, k=7, seed=2).elbo, log_px,
                               atol=2e-3)
    np.testing.assert_allclose(model.log_likelihood(lg.x, k=100, seed=3),
                               log_px, atol=2e-3)


def test_bounds_are_ordered_for_an_inexact_posterior(lg):
    """E[ELBO] <= E[IWAE_5] <= E[IWAE_50] <= log p(x), each gap > 4 SE."""
    model = linear_vae(lg, loc_shift=0.3, scale_mult=1.6)
    log_px = lg.log_px(lg.x).mean()
    reps = 60
    # The data `reps` times in one batch: every row draws its own noise, so
    # each copy is an independent estimate of the mean bound (one call).
    x = np.tile(lg.x, (reps, 1))

    def mean_and_se(bound):
        vals = np.asarray(bound).reshape(reps, len(lg.x)).mean(axis=1)
        return vals.mean(), vals.std(ddof=1) / math.sqrt(reps)

    elbo = mean_and_se(model.elbo(x, n_samples=1, seed=0).elbo)
    iw5 = mean_and_se(model.iwae(x, k=5, seed=1).elbo)
    iw50 = mean_and_se(model.iwae(x, k=50, seed=2).elbo)
    for (lo, lo_se), (hi, hi_se) in [(elbo, iw5), (iw5, iw50)]:
        assert hi - lo > 4 * math.hypot(lo_se, hi_se), (lo, hi)
    assert iw50[0] < log_px
    # The analytic-KL ELBO is the same expectation with less variance.
    analytic = model.elbo(lg.x, kl="analytic", n_samples=2000, seed=9).elbo
    assert abs(np.mean(analytic) - elbo[0]) < 4 * elbo[1] + 0.02
    # And log_likelihood(k=5000) has closed most of the gap.
    ll = model.log_likelihood(lg.x, k=5000, seed=4).numpy()
    assert np.mean(ll) <= log_px + 0.01
    assert log_px - np.mean(ll) < 0.1 * (log_px - elbo[0])


def test_log_likelihood_chunking_matches_one_chunk(lg):
    model = linear_vae(lg, loc_shift=0.3, scale_mult=1.6)
    one = model.log_likelihood(lg.x, k=2000, seed=5, chunk_size=2000)
    small = model.log_likelihood(lg.x, k=2000, seed=6, chunk_size=33)  # ragged
    log_px = lg.log_px(lg.x)
    # Both are k=2000 estimates: close to log p(x) and to each other.
    np.testing.assert_allclose(one, log_px, atol=0.1)
    np.testing.assert_allclose(small, log_px, atol=0.1)
    assert abs(np.mean(one) - np.mean(small)) < 0.02


def test_log_likelihood_runs_a_compiled_loop_not_python(lg):
    calls = []
    model = linear_vae(lg, loc_shift=0.3)
    decode = model.decode

    def counting_decode(z, labels=None):
        calls.append(1)
        return decode(z, labels)

    model.decode = counting_decode
    model.log_likelihood(lg.x, k=1000, seed=1, chunk_size=10)
    # 100 chunks ran, but decode was traced once for the loop body (plus
    # nothing for the absent remainder chunk).
    assert len(calls) == 1


def test_log_likelihood_is_seeded(lg):
    model = linear_vae(lg, loc_shift=0.3, scale_mult=1.6)
    a = model.log_likelihood(lg.x, k=50, seed=11)
    b = model.log_likelihood(lg.x, k=50, seed=11)
    c = model.log_likelihood(lg.x, k=50, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_analytic_kl_matches_closed_form_and_monte_carlo():
    """KL(N(mu, s^2) || N(0, I)) = 1/2 sum(s^2 + mu^2 - 1 - log s^2)."""
    tf.random.set_seed(0)
    model = tfpvae.VAE(latent_dim=4, data_shape=(6,), likelihood="gaussian",
                       hidden_units=(16,), seed=0)
    # Larger weights give posteriors far from the prior.
    for v in model.encoder.trainable_variables:
        v.assign(v * 3.0)
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    q = model.encode(x)
    mu, s = q.mean().numpy(), q.stddev().numpy()
    closed = 0.5 * np.sum(s ** 2 + mu ** 2 - 1 - np.log(s ** 2), axis=-1)
    analytic = model.elbo(x, kl="analytic", seed=0).rate.numpy()
    np.testing.assert_allclose(analytic, closed, rtol=1e-4)
    n = 20000
    mc = model.elbo(x, kl="mc", n_samples=n, seed=1).rate.numpy()
    # Per-example SE of the MC estimate, from the samples' own spread.
    z = q.sample(2000, seed=[0, 7])
    spread = np.std(q.log_prob(z) - model.prior.log_prob(z), axis=0)
    np.testing.assert_array_less(np.abs(mc - closed), 5 * spread / math.sqrt(n))
    assert np.all(closed > 1.0)  # A real test: the posteriors are not trivial.


def test_beta_weights_only_the_rate():
    model = tfpvae.VAE(latent_dim=2, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,))
    x = np.ones((3, 4), np.float32)
    a = model.elbo(x, beta=1.0, seed=3)
    b = model.elbo(x, beta=0.25, seed=3)
    np.testing.assert_allclose(a.elbo, b.elbo)
    np.testing.assert_allclose(b.objective, -(b.distortion + 0.25 * b.rate),
                               rtol=1e-6)
    assert np.all(b.objective > a.objective)


def test_epsilon_std_scales_the_sampling_noise_only(lg):
    model = linear_vae(lg, loc_shift=0.3, scale_mult=1.6)
    tiny = linear_vae(lg, loc_shift=0.3, scale_mult=1.6)
    tiny.epsilon_std = 1e-6
    out = tiny.elbo(lg.x, kl="analytic", seed=1)
    # z = mu exactly, so the distortion is -log p(x | mu(x)).
    mu = tiny.encode(lg.x).mean()
    expected = -tiny.decode(mu).log_prob(lg.x)
    np.testing.assert_allclose(out.distortion, expected, rtol=1e-4)
    # ... while the analytic rate still measures the unscaled posterior.
    np.testing.assert_allclose(out.rate, model.elbo(lg.x, seed=1).rate,
                               rtol=1e-6)
