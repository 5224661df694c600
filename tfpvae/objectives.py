"""Variational bounds on log p(x), written once against distributions.

For an encoder q(z|x), decoder p(x|z) and prior p(z):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = -(distortion + rate)

`distortion` = -E_q log p(x|z) is estimated with `n_samples` reparameterised
draws. `rate` = KL(q||p) is either analytic (`tfd.kl_divergence`, when a
closed form exists: diagonal Gaussian posterior with a normal prior) or the
Monte Carlo estimate E_q[log q(z|x) - log p(z)] at the same draws ("mc"),
which serves every posterior (flows) and prior (mixtures, VampPrior) unchanged.
The beta-VAE objective weights the rate: -(distortion + beta * rate).

Several latent layers. When q(z|x) and p(z) are `tfd.JointDistribution`s
over layers z_1..z_L (a hierarchy), the draw and the log-densities are read
layer by layer with `sample_distributions`: the rate of layer l is
E_q[log q(z_l|...) - log p(z_l|z_>l)], or with kl="analytic" the closed-form
KL between the two conditionals at the drawn parents, averaged over the
draws. Nothing else changes, so a hierarchy, a flow on a layer or a label
needs no objective code of its own. `ELBOResult.layer_rates` holds each
layer's rate.

Free bits [4]: with `free_bits` = lambda > 0 the training objective replaces
each layer's rate by max(lambda, its mean over the batch); the reported
ELBO stays the true bound.

The importance-weighted bound with k samples [1],

    IWAE_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x),   z_i ~ q(z|x),

satisfies ELBO <= IWAE_k <= IWAE_{k+1} <= log p(x) in expectation and tends
to log p(x) as k grows; with k = 5000 it is the standard estimate of the test
log-likelihood. With beta != 1, the training objective uses the log-weights
log p(x|z) + beta (log p(z) - log q(z|x)).

The doubly reparameterised gradient estimator (DReG) [5] of IWAE_k: the
gradient of the encoder through z_i is weighted by the squared normalised
weights, sum_i w_i^2 d log w_i / dz_i dz_i/dphi, with log q evaluated at
parameters held fixed, which removes the score-function term whose variance
grows with k; the decoder and prior get the usual sum_i w_i d log w_i.
With beta != 1 only beta times the score term is removed, so the weight of
the path through z_i is (1 - beta) w_i + beta w_i^2 (the identity of [5]
applied to the beta-weighted log-weights). Its expectation equals the IWAE
gradient at every beta (tests/test_gradients.py).

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
[2] Kingma, D. P. and Welling, M. Auto-encoding variational Bayes. ICLR 2014.
[3] Higgins, I. et al. beta-VAE: learning basic visual concepts with a
    constrained variational framework. ICLR 2017.
[4] Kingma, D. P. et al. Improved variational inference with inverse
    autoregressive flow. NeurIPS 2016.
[5] Tucker, G., Lawson, D., Gu, S. and Maddison, C. J. Doubly reparameterized
    gradient estimators for Monte Carlo objectives. ICLR 2019.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

KL_CHOICES = ("analytic", "mc")
GRADIENT_ESTIMATORS = ("standard", "dreg")

#: Largest decoder output (elements) of one chunk of importance samples in
#: `log_likelihood` and the evaluation's ELBO draws: 4 MB of float32 keeps a
#: chunk in cache; on CPU 2**20 ran ~1.5x faster than 2**24
#: (docs/performance.md).
CHUNK_BUDGET = 2 ** 20


class ELBOResult(NamedTuple):
    """Per-example bound terms, each of shape [N].

    Attributes:
        elbo: The bound on log p(x) with beta = 1: the ELBO, or the
            importance-weighted bound for `importance_weighted_bound`.
        rate: KL(q(z|x) || p(z)), analytic or Monte Carlo (mean over samples).
        distortion: -log p(x|z), averaged over the posterior samples.
        objective: What training maximises: the beta-weighted bound (with
            free bits, if any).
        layer_rates: The rate of each latent layer, nearest the data first
            (one entry for a single layer); they sum to `rate`.
        extras: Further per-example terms an objective reports, by name
            (e.g. the semi-supervised model's classification loss).
    """
    elbo: tf.Tensor
    rate: tf.Tensor
    distortion: tf.Tensor
    objective: tf.Tensor
    layer_rates: tuple = ()
    extras: dict = {}


def check_choice(name: str, value: str, choices) -> None:
    """Raises ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of "
                         f"{tuple(choices)}.")


# --------------------------------------------------------------------------
# Reading a posterior and a prior, one layer or several.

def _is_joint(distribution) -> bool:
    return isinstance(distribution, tfd.JointDistribution)


def sample_posterior(posterior: tfd.Distribution, n: int, seed=None):
    """Draws z ~ q and returns it with the log-density of each layer.

    Args:
        posterior: q(z|x): a distribution over one latent layer, or a
            `tfd.JointDistribution` over several.
        n: Draws per example.
        seed: Stateless seed or None.

    Returns:
        (z, log_q, q_layers): z with a leading sample axis [n, N, ...] (the
        joint's structure for several layers), the list of per-layer
        log q [n, N] (one entry for one layer) and the list of per-layer
        distributions (the conditionals at the drawn parents).
    """
    if _is_joint(posterior):
        dists, z = posterior.sample_distributions(n, seed=seed)
        flat_d, flat_z = tf.nest.flatten(dists), tf.nest.flatten(z)
        return z, [d.log_prob(v) for d, v in zip(flat_d, flat_z)], flat_d
    # One pass: for a flow the log-density comes from the forward pass.
    z, log_q = posterior.experimental_sample_and_log_prob(n, seed=seed)
    return z, [log_q], [posterior]


def prior_log_probs(prior: tfd.Distribution, z):
    """The per-layer log p(z_l|z_>l) at z, and the per-layer distributions.

    Returns:
        (log_p, p_layers): lists as `sample_posterior`'s.
    """
    if _is_joint(prior):
        dists, _ = prior.sample_distributions(value=z)
        flat_d, flat_z = tf.nest.flatten(dists), tf.nest.flatten(z)
        return [d.log_prob(v) for d, v in zip(flat_d, flat_z)], flat_d
    return [prior.log_prob(z)], [prior]


def _over_draws(t: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """`t` broadcast to [n, N] and averaged over the draws: [N]."""
    return tf.reduce_mean(tf.broadcast_to(t, shape), axis=0)


def layer_kl(q_layers, p_layers, shape) -> list[tf.Tensor]:
    """Closed-form KL of each layer at the drawn parents, [N] each."""
    return [_over_draws(tfd.kl_divergence(q, p), shape)
            for q, p in zip(q_layers, p_layers)]


def free_bits_rate(layer_rates, free_bits: float) -> tf.Tensor:
    """Sum over layers of max(free_bits, the layer's batch-mean rate), per
    example: where a layer's mean is below the floor its term is the
    constant floor (no gradient), else the example's own rate."""
    total = 0.0
    for rate in layer_rates:
        floor = tf.cast(free_bits, rate.dtype)
        total += tf.where(tf.reduce_mean(rate) >= floor, rate,
                          tf.broadcast_to(floor, tf.shape(rate)))
    return total


# --------------------------------------------------------------------------
# The bounds.

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
    free_bits: float = 0.0,
) -> ELBOResult:
    """Estimates the ELBO and its rate/distortion split.

    Args:
        x: Data `[N, *data_shape]`.
        posterior: q(z|x) with batch shape [N] (a joint distribution over
            layers for a hierarchy); the samples are drawn from it.
        prior: p(z), with the posterior's structure.
        decode: `z [S, N, ...] -> p(x|z)` with batch shape [S, N].
        kl: "analytic" (closed form, `tfd.kl_divergence`, per layer) or "mc".
        n_samples: Posterior samples S per example.
        beta: Weight of the rate in `objective`.
        seed: Stateless seed (shape [2] int) or None.
        kl_posterior: The distribution whose analytic KL is taken, when it
            differs from the sampling posterior (see `VAE.epsilon_std`).
        free_bits: Floor lambda (nats) of each layer's rate in `objective`.

    Returns:
        An `ELBOResult` of [N] tensors.
    """
    check_choice("kl", kl, KL_CHOICES)
    z, log_q, q_layers = sample_posterior(posterior, n_samples, seed)
    log_px_z = decode(z).log_prob(x)  # [S, N]
    distortion = -tf.reduce_mean(log_px_z, axis=0)  # [N]
    if kl == "analytic" and not _is_joint(posterior):
        rates = [tfd.kl_divergence(kl_posterior or posterior, prior)]  # [N]
    else:
        log_p, p_layers = prior_log_probs(prior, z)
        if kl == "analytic":
            rates = layer_kl(q_layers, p_layers, tf.shape(log_px_z))
        else:
            rates = [tf.reduce_mean(q - p, axis=0) for q, p in zip(log_q, log_p)]
    rate = tf.add_n(rates) if len(rates) > 1 else rates[0]
    penalised = free_bits_rate(rates, free_bits) if free_bits else rate
    return ELBOResult(elbo=-(distortion + rate), rate=rate,
                      distortion=distortion,
                      objective=-(distortion + beta * penalised),
                      layer_rates=tuple(rates))


def log_importance_weights(x, posterior, prior, decode, k, seed=None):
    """Returns log p(x|z_i), log p(z_i) and log q(z_i|x), each [k, N]
    (summed over latent layers)."""
    log_px_z, log_p, log_q = _log_weight_parts(x, posterior, prior, decode,
                                               k, seed)
    return log_px_z, tf.add_n(log_p), tf.add_n(log_q)


def _log_weight_parts(x, posterior, prior, decode, k, seed):
    """log p(x|z_i) [k, N] and the per-layer lists of log p and log q."""
    z, log_q, _ = sample_posterior(posterior, k, seed)
    log_p, _ = prior_log_probs(prior, z)
    return decode(z).log_prob(x), log_p, log_q


def importance_weighted_bound(
    x: tf.Tensor,
    posterior: tfd.Distribution,
    prior: tfd.Distribution,
    decode: Callable[[tf.Tensor], tfd.Distribution],
    *,
    k: int,
    beta: float | tf.Tensor = 1.0,
    seed=None,
    gradient_estimator: str = "standard",
) -> ELBOResult:
    """The IWAE bound with k samples, with rate/distortion diagnostics.

    `rate` and `distortion` are the plain Monte Carlo ELBO terms at the same k
    samples, so `elbo` >= -(rate + distortion) holds sample by sample (Jensen).

    Args:
        x, posterior, prior, decode, beta, seed: As `evidence_lower_bound`.
        k: Importance samples.
        gradient_estimator: "standard" (the reparameterised gradient of the
            bound) or "dreg" (doubly reparameterised [5]; a posterior over
            one layer that is a `tfd.MultivariateNormalDiag`). The value of
            `objective` is the same; only its gradient differs.
    """
    check_choice("gradient_estimator", gradient_estimator, GRADIENT_ESTIMATORS)
    if gradient_estimator == "dreg":
        return _dreg_bound(x, posterior, prior, decode, k=k, beta=beta,
                           seed=seed)
    log_px_z, log_p, log_q = _log_weight_parts(x, posterior, prior, decode,
                                               k, seed)
    log_pz, log_qz = tf.add_n(log_p), tf.add_n(log_q)
    log_k = math.log(k)
    bound = tf.reduce_logsumexp(log_px_z + log_pz - log_qz, axis=0) - log_k
    objective = tf.reduce_logsumexp(
        log_px_z + beta * (log_pz - log_qz), axis=0) - log_k
    return _iwae_result(bound, objective, log_px_z, log_p, log_q)


def _iwae_result(bound, objective, log_px_z, log_p, log_q) -> ELBOResult:
    layer_rates = tuple(tf.reduce_mean(q - p, axis=0)
                        for q, p in zip(log_q, log_p))
    rate = tf.add_n(layer_rates) if len(layer_rates) > 1 else layer_rates[0]
    return ELBOResult(elbo=bound, rate=rate,
                      distortion=-tf.reduce_mean(log_px_z, axis=0),
                      objective=objective, layer_rates=layer_rates)


def _weighted_gradient(z: tf.Tensor, holder: dict) -> tf.Tensor:
    """The identity on z [k, N, D] whose gradient is multiplied on the way
    back by holder["weights"] [k, N] (set after the forward pass)."""
    @tf.custom_gradient
    def identity(z):
        def grad(dz):
            return dz * tf.cast(holder["weights"], dz.dtype)[..., None]
        return tf.identity(z), grad
    return identity(z)


def _dreg_bound(x, posterior, prior, decode, *, k, beta, seed) -> ELBOResult:
    """IWAE_k with the DReG gradient: the value of the bound, and a surrogate
    sum_i w_i log w_i whose path through z to the encoder is weighted once
    more by (1 - beta) + beta w_i ((1 - beta) w_i + beta w_i^2 in all; w_i^2
    at beta = 1), with log q taken at fixed parameters.

    Why: the total derivative of log w_i = log p(x|z_i) + beta (log p(z_i) -
    log q(z_i|x)) has the score term -beta d log q / dphi at fixed z_i, and
    E[w_i d log q(z_i)/dphi] = E[dw_i/dz_i dz_i/dphi] with dw_i/dz_i = w_i (1 -
    w_i) d log w_i/dz_i [5]; replacing beta times it leaves the path weight
    w_i - beta (w_i - w_i^2)."""
    if not isinstance(posterior, tfd.MultivariateNormalDiag):
        raise ValueError(
            "--gradient_estimator=dreg needs a diagonal Gaussian posterior "
            "over one latent layer (no flow, one --latent_dim size); use "
            "--gradient_estimator=standard.")
    holder = {}
    z = _weighted_gradient(posterior.sample(k, seed=seed), holder)  # [k, N, D]
    fixed_q = tfd.MultivariateNormalDiag(
        loc=tf.stop_gradient(posterior.loc),
        scale_diag=tf.stop_gradient(posterior.stddev()))
    log_px_z, log_pz, log_q = (decode(z).log_prob(x), prior.log_prob(z),
                               fixed_q.log_prob(z))
    log_w = log_px_z + beta * (log_pz - log_q)
    weights = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
    holder["weights"] = (1.0 - beta) + beta * weights
    surrogate = tf.reduce_sum(weights * log_w, axis=0)
    log_k = math.log(k)
    objective = tf.reduce_logsumexp(log_w, axis=0) - log_k
    objective = surrogate + tf.stop_gradient(objective - surrogate)
    bound = tf.reduce_logsumexp(log_px_z + log_pz - log_q, axis=0) - log_k
    return _iwae_result(bound, objective, log_px_z, [log_pz], [log_q])
