"""Variational bounds on log p(x): the ELBO and the importance-weighted bound.

For an encoder q(z|x), decoder p(x|z) and prior p(z):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = -(distortion + rate)

`distortion` = -E_q log p(x|z) is estimated with `n_samples` reparameterised
draws. `rate` = KL(q||p) is either analytic (`tfd.kl_divergence`, when a
closed form exists: diagonal Gaussian posterior with a normal prior) or the
Monte Carlo estimate E_q[log q(z|x) - log p(z)] at the same draws ("mc"),
which serves every posterior (flows) and prior (mixtures, VampPrior) unchanged.
The beta-VAE objective weights the rate: -(distortion + beta * rate).

The importance-weighted bound with k samples [1],

    IWAE_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x),   z_i ~ q(z|x),

satisfies ELBO <= IWAE_k <= IWAE_{k+1} <= log p(x) in expectation and tends
to log p(x) as k grows; with k = 5000 it is the standard estimate of the test
log-likelihood. With beta != 1, the training objective uses the log-weights
log p(x|z) + beta (log p(z) - log q(z|x)).

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
[2] Kingma, D. P. and Welling, M. Auto-encoding variational Bayes. ICLR 2014.
[3] Higgins, I. et al. beta-VAE: learning basic visual concepts with a
    constrained variational framework. ICLR 2017.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

KL_CHOICES = ("analytic", "mc")


class ELBOResult(NamedTuple):
    """Per-example bound terms, each of shape [N].

    Attributes:
        elbo: The bound on log p(x) with beta = 1: the ELBO, or the
            importance-weighted bound for `importance_weighted_bound`.
        rate: KL(q(z|x) || p(z)), analytic or Monte Carlo (mean over samples).
        distortion: -log p(x|z), averaged over the posterior samples.
        objective: What training maximises: the beta-weighted bound.
    """
    elbo: tf.Tensor
    rate: tf.Tensor
    distortion: tf.Tensor
    objective: tf.Tensor


def evidence_lower_bound(
    x: tf.Tensor,
    posterior: tfd.Distribution,
    prior: tfd.Distribution,
    decode: Callable[[tf.Tensor], tfd.Distribution],
    *,
    kl: str = "analytic",
    n_samples: int = 1,
    beta: float | tf.Tensor = 1.0,
    seed=None,
    kl_posterior: tfd.Distribution | None = None,
) -> ELBOResult:
    """Estimates the ELBO and its rate/distortion split.

    Args:
        x: Data `[N, *data_shape]`.
        posterior: q(z|x) with batch shape [N] and event [latent_dim]; the
            samples are drawn from it.
        prior: p(z) with event [latent_dim].
        decode: `z [S, N, D] -> p(x|z)` with batch shape [S, N].
        kl: "analytic" (closed form, `tfd.kl_divergence`) or "mc".
        n_samples: Posterior samples S per example.
        beta: Weight of the rate in `objective`.
        seed: Stateless seed (shape [2] int) or None.
        kl_posterior: The distribution whose analytic KL is taken, when it
            differs from the sampling posterior (see `VAE.epsilon_std`).

    Returns:
        An `ELBOResult` of [N] tensors.
    """
    if kl not in KL_CHOICES:
        raise ValueError(f"Unknown kl {kl!r}; choose one of {KL_CHOICES}.")
    z, log_q = posterior.experimental_sample_and_log_prob(n_samples, seed=seed)
    distortion = -tf.reduce_mean(decode(z).log_prob(x), axis=0)  # [N]
    if kl == "analytic":
        rate = tfd.kl_divergence(kl_posterior or posterior, prior)  # [N]
    else:
        rate = tf.reduce_mean(log_q - prior.log_prob(z), axis=0)  # [N]
    return ELBOResult(elbo=-(distortion + rate), rate=rate,
                      distortion=distortion,
                      objective=-(distortion + beta * rate))


def log_importance_weights(x, posterior, prior, decode, k, seed=None):
    """Returns log p(x|z_i), log p(z_i) and log q(z_i|x), each [k, N]."""
    z, log_q = posterior.experimental_sample_and_log_prob(k, seed=seed)
    return decode(z).log_prob(x), prior.log_prob(z), log_q


def importance_weighted_bound(
    x: tf.Tensor,
    posterior: tfd.Distribution,
    prior: tfd.Distribution,
    decode: Callable[[tf.Tensor], tfd.Distribution],
    *,
    k: int,
    beta: float | tf.Tensor = 1.0,
    seed=None,
) -> ELBOResult:
    """The IWAE bound with k samples, with rate/distortion diagnostics.

    `rate` and `distortion` are the plain Monte Carlo ELBO terms at the same k
    samples, so `elbo` >= -(rate + distortion) holds sample by sample (Jensen).
    """
    log_px_z, log_pz, log_q = log_importance_weights(
        x, posterior, prior, decode, k, seed=seed)
    log_k = math.log(k)
    bound = tf.reduce_logsumexp(log_px_z + log_pz - log_q, axis=0) - log_k
    objective = tf.reduce_logsumexp(
        log_px_z + beta * (log_pz - log_q), axis=0) - log_k
    return ELBOResult(elbo=bound,
                      rate=tf.reduce_mean(log_q - log_pz, axis=0),
                      distortion=-tf.reduce_mean(log_px_z, axis=0),
                      objective=objective)
