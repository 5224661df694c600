"""The disentangling objectives (`--objective`): penalties on the aggregate
posterior q(z) = (1/N) sum_n q(z|x_n), and the objectives built from them.

Notation: a batch of B examples x_i of a dataset of N, each with a diagonal
Gaussian posterior q(z|x_i) = N(mu_i, diag(sigma_i^2)) over D latent
dimensions, and one draw z_i ~ q(z|x_i) per example.

Total correlation [1]. KL(q(z|x) || p(z)) averaged over the data splits into
the index-code mutual information, the total correlation and the
dimension-wise KL:

    E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || prod_d q(z_d))
                             + sum_d KL(q(z_d) || p(z_d)),

per example  MI_i = log q(z_i|x_i) - log q(z_i),
             TC_i = log q(z_i) - sum_d log q(z_id),
             DWKL_i = sum_d log q(z_id) - log p(z_i),

which telescope to log q(z_i|x_i) - log p(z_i), the Monte Carlo rate. The
aggregate densities are estimated from the batch, with log-weights w_ij:

    log q(z_i) ~= logsumexp_j [w_ij + log q(z_i|x_j)],
    log q(z_id) ~= logsumexp_j [w_ij + log q(z_id|x_j)]   (each d).

* Minibatch-weighted sampling ("mws"): w_ij = -log B for every j, so that
  when the batch is the whole dataset (B = N) the estimate is exactly the
  aggregate posterior's density. Chen et al. print the weight as 1/(N B)
  (and their code uses it): that shifts every log-density by -log N, and so
  TC_i by (D - 1) log N, a constant with the same gradient but a reported TC
  of ~100 nats on MNIST for independent codes. Both are biased when the
  posteriors are narrow and N >> B (the example's own term then dominates
  and is weighted 1/B rather than 1/N).
* Minibatch-stratified sampling ("mss"), Chen et al.'s Appendix C.2: with
  M = B - 1 other examples, example i's own term is weighted 1/N, one other
  (here j = i + 1 mod B) (N - M) / (N M), the remaining M - 1 others 1/M:
  an unbiased estimate of q(z_i) for every batch drawn without replacement.
  (Chen et al.'s code places the (N - M)/(N M) weights differently in the
  last two rows; this is the paper's formula.)

DIP-VAE [2]: the covariance of the aggregate posterior over the batch, of
the means for DIP-VAE-I, C = Cov_x[mu(x)], and of q(z) itself for
DIP-VAE-II, C = Cov_x[mu(x)] + E_x[diag(sigma^2(x))] (both with the batch's
1/B normalisation), is pushed towards the identity:

    P = lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2.

MMD [3, 4]: the unbiased U-statistic of the squared maximum mean discrepancy
between n samples x ~ q(z) and m samples y ~ p(z),

    MMD^2 = sum_{i != j} k(x_i, x_j) / (n (n-1)) + sum_{i != j} k(y_i, y_j)
            / (m (m-1)) - 2 sum_{i, j} k(x_i, y_j) / (n m),

which can be slightly negative when q = p. Kernels, with scale C = 2 D
(2 D sigma_z^2 of a unit-variance prior, Tolstikhin et al.): the inverse
multiquadric k(x, y) = C / (C + ||x - y||^2) ("imq"), or the Gaussian
k(x, y) = exp(-||x - y||^2 / C) ("rbf").

FactorVAE [5]: a discriminator D(z) tells draws of q(z) from draws of
prod_d q(z_d), made by permuting each dimension independently across the
batch (`permute_dims`); at its optimum log D/(1 - D) = log q(z) /
prod_d q(z_d), so its logit difference estimates TC_i.

The capacity schedule [6]: C(t) = min(C_max, C_max t / T).

The objectives (`OBJECTIVES`, per example; a batch-level penalty P is
spread as P / B on each of the B examples, so that the sum over the batch
that the trainer minimises carries P once):

* elbo: `model.training_terms`, unchanged (the ELBO, the beta-VAE objective
  with --beta, IWAE with --n_samples);
* beta_tcvae [1]: ELBO - (tc_weight - 1) TC_i. With --beta=1 this is Chen et
  al.'s objective with alpha = gamma = 1 and beta = tc_weight:
  -distortion - MI - tc_weight TC - DWKL;
* factor_vae [5]: ELBO - tc_weight (logit_0 - logit_1)(z_i); the
  discriminator (`auxiliary`) is trained by its own optimizer on the cross-
  entropy of z ~ q(z|x) (class 0) against permute_dims of another draw
  (class 1), with no gradient into the VAE;
* dip_vae_i, dip_vae_ii [2]: ELBO - P / B;
* info_vae [3]: -distortion - beta rate - mmd_weight MMD^2 / B (the
  beta-ELBO minus the MMD; with --beta=0 it is WAE-MMD [4]);
* capacity [6]: -distortion - capacity_weight |rate_i - C(step)|.

All but `elbo` draw their own z ~ q(z|x) from `model.encode` (independent
of the ELBO's draw), and need one latent layer with a diagonal Gaussian
posterior (no flow). Their `extras` hold, per example, a value whose mean
over the batch is the quantity reported: TC_i, the discriminator's TC and
cross-entropy, the batch's DIP penalty or MMD^2 repeated, C(step).

#### References
[1] Chen, R. T. Q., Li, X., Grosse, R. and Duvenaud, D. Isolating sources of
    disentanglement in variational autoencoders. NeurIPS 2018.
[2] Kumar, A., Sattigeri, P. and Balakrishnan, A. Variational inference of
    disentangled latent concepts from unlabeled observations. ICLR 2018.
[3] Zhao, S., Song, J. and Ermon, S. InfoVAE: information maximizing
    variational autoencoders. arXiv:1706.02262, 2017 (AAAI 2019).
[4] Tolstikhin, I., Bousquet, O., Gelly, S. and Schoelkopf, B. Wasserstein
    auto-encoders. ICLR 2018.
[5] Kim, H. and Mnih, A. Disentangling by factorising. ICML 2018.
[6] Burgess, C. P. et al. Understanding disentangling in beta-VAE.
    arXiv:1804.03599, 2018.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfpvae import objectives

tfd = tfp.distributions

TC_ESTIMATORS = ("mws", "mss")

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _as_seed(seed) -> tf.Tensor:
    """An int / [2] seed as a stateless seed tensor; None draws one."""
    if seed is None:
        return tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def _seeds(seed, n: int) -> list[tf.Tensor]:
    """n independent stateless seeds derived from `seed`."""
    seed = _as_seed(seed)
    return [tf.random.experimental.stateless_fold_in(seed, 7919 + i)
            for i in range(n)]


# --------------------------------------------------------------------------
# Total correlation (Chen et al.).

class TotalCorrelation(NamedTuple):
    """Per-example terms of the decomposition of the rate, each [B].

    Attributes:
        total_correlation: TC_i = log q(z_i) - sum_d log q(z_id).
        mutual_information: MI_i = log q(z_i|x_i) - log q(z_i).
        log_qz: The estimate of log q(z_i) (aggregate posterior).
        log_prod_qz: The estimate of sum_d log q(z_id).
        log_qz_x: log q(z_i|x_i).
    """
    total_correlation: tf.Tensor
    mutual_information: tf.Tensor
    log_qz: tf.Tensor
    log_prod_qz: tf.Tensor
    log_qz_x: tf.Tensor

    def dimension_wise_kl(self, log_pz: tf.Tensor) -> tf.Tensor:
        """DWKL_i = sum_d log q(z_id) - log p(z_i) [B], for log p(z_i) [B]."""
        return self.log_prod_qz - log_pz


def gaussian_log_density_matrix(z, loc, scale) -> tf.Tensor:
    """log N(z_id; loc_jd, scale_jd^2) for every pair (i, j).

    Args:
        z: [B, D] draws.
        loc, scale: [B, D] the posteriors' means and standard deviations.

    Returns:
        [B, B, D]: entry (i, j, d) is log q(z_id | x_j).
    """
    z, loc, scale = (tf.convert_to_tensor(t, tf.float32)
                     for t in (z, loc, scale))
    standardised = (z[:, None, :] - loc[None, :, :]) / scale[None, :, :]
    return (-0.5 * tf.square(standardised) - tf.math.log(scale)[None]
            - _HALF_LOG_2PI)


def log_importance_weights(batch_size, dataset_size: int,
                           estimator: str = "mss") -> tf.Tensor:
    """The log-weights w_ij [B, B] of the batch's terms (see the module).

    Args:
        batch_size: B (an int or a scalar tensor), >= 2.
        dataset_size: N >= B - 1.
        estimator: "mws" or "mss".
    """
    objectives.check_choice("tc_estimator", estimator, TC_ESTIMATORS)
    b = tf.cast(batch_size, tf.float32)
    if estimator == "mws":
        return tf.fill([batch_size, batch_size], -tf.math.log(b))
    n, m = tf.cast(dataset_size, tf.float32), b - 1.0
    eye = tf.eye(batch_size)
    stratum = tf.roll(eye, shift=1, axis=1)  # (i, i + 1 mod B)
    weights = (eye / n + stratum * tf.maximum(n - m, 0.0) / (n * m)
               + (1.0 - eye - stratum) / m)
    return tf.math.log(weights)


def total_correlation(z, loc, scale, dataset_size: int,
                      estimator: str = "mss") -> TotalCorrelation:
    """Minibatch estimates of TC_i and MI_i (Chen et al. 2018).

    Args:
        z: [B, D] with z_i ~ q(z|x_i).
        loc, scale: [B, D] the diagonal Gaussian posteriors of the batch.
        dataset_size: N, the examples the aggregate posterior averages.
        estimator: "mws" (minibatch-weighted) or "mss" (stratified).

    Returns:
        A `TotalCorrelation` of [B] tensors.

    Raises:
        ValueError: For a batch of one example, or N < B - 1 (when the batch
            size is known).
    """
    z = tf.convert_to_tensor(z, tf.float32)
    static_b = z.shape[0]
    if static_b is not None and static_b < 2:
        raise ValueError("The total correlation is estimated from the other "
                         "examples of the batch; use a batch of >= 2 "
                         "(--batch_size).")
    if static_b is not None and dataset_size < static_b - 1:
        raise ValueError(f"dataset_size={dataset_size} is smaller than the "
                         f"batch ({static_b}); pass the number of training "
                         f"examples.")
    log_q = gaussian_log_density_matrix(z, loc, scale)  # [B, B, D]
    weights = log_importance_weights(tf.shape(z)[0], dataset_size, estimator)
    log_qz = tf.reduce_logsumexp(weights + tf.reduce_sum(log_q, -1), axis=1)
    log_prod_qz = tf.reduce_sum(
        tf.reduce_logsumexp(weights[..., None] + log_q, axis=1), axis=-1)
    log_qz_x = tf.reduce_sum(tf.linalg.diag_part(
        tf.transpose(log_q, [2, 0, 1])), axis=0)
    return TotalCorrelation(total_correlation=log_qz - log_prod_qz,
                            mutual_information=log_qz_x - log_qz,
                            log_qz=log_qz, log_prod_qz=log_prod_qz,
                            log_qz_x=log_qz_x)


# --------------------------------------------------------------------------
# DIP-VAE (Kumar et al.).

def aggregate_covariance(loc, scale=None) -> tf.Tensor:
    """The batch covariance of the aggregate posterior, [D, D].

    Args:
        loc: [B, D] the posteriors' means mu(x).
        scale: [B, D] their standard deviations, or None.

    Returns:
        Cov[mu] (1/B normalisation; DIP-VAE-I), plus E[diag(sigma^2)] when
        `scale` is given (DIP-VAE-II).
    """
    loc = tf.convert_to_tensor(loc, tf.float32)
    centred = loc - tf.reduce_mean(loc, axis=0, keepdims=True)
    covariance = tf.matmul(centred, centred, transpose_a=True) / tf.cast(
        tf.shape(loc)[0], tf.float32)
    if scale is not None:
        covariance += tf.linalg.diag(tf.reduce_mean(tf.square(scale), axis=0))
    return covariance


def dip_penalty(covariance, lambda_od: float, lambda_d: float) -> tf.Tensor:
    """lambda_od sum_{i!=j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2, a scalar."""
    diagonal = tf.linalg.diag_part(covariance)
    off_diagonal = tf.reduce_sum(tf.square(covariance)) - tf.reduce_sum(
        tf.square(diagonal))
    return lambda_od * off_diagonal + lambda_d * tf.reduce_sum(
        tf.square(diagonal - 1.0))


# --------------------------------------------------------------------------
# MMD (Zhao et al.; Tolstikhin et al.).

def inverse_multiquadric(squared_distance, scale) -> tf.Tensor:
    """C / (C + ||x - y||^2)."""
    return scale / (scale + squared_distance)


def gaussian_rbf(squared_distance, scale) -> tf.Tensor:
    """exp(-||x - y||^2 / C)."""
    return tf.exp(-squared_distance / scale)


#: Kernels of `mmd_squared`, by name: `k(squared distance, scale C)`.
KERNELS: dict[str, Callable] = {"imq": inverse_multiquadric,
                                "rbf": gaussian_rbf}


def _squared_distances(a, b) -> tf.Tensor:
    return tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)


def mmd_squared(x, y, kernel: str = "imq", scale=None) -> tf.Tensor:
    """The unbiased U-statistic of MMD^2 between two samples, a scalar.

    Args:
        x: [n, D] samples of one distribution (q(z)), n >= 2.
        y: [m, D] samples of the other (p(z)), m >= 2.
        kernel: A name of `KERNELS`.
        scale: The kernel's C; default 2 D (a unit-variance prior).
    """
    objectives.check_choice("mmd_kernel", kernel, KERNELS)
    x, y = (tf.convert_to_tensor(t, tf.float32) for t in (x, y))
    k = KERNELS[kernel]
    if scale is None:
        scale = 2.0 * x.shape[-1]

    def within(a):
        size = tf.cast(tf.shape(a)[0], tf.float32)
        gram = k(_squared_distances(a, a), scale)
        off = tf.reduce_sum(gram) - tf.reduce_sum(tf.linalg.diag_part(gram))
        return off / (size * (size - 1.0))

    between = tf.reduce_mean(k(_squared_distances(x, y), scale))
    return within(x) + within(y) - 2.0 * between


# --------------------------------------------------------------------------
# Capacity (Burgess et al.) and FactorVAE (Kim & Mnih).

def capacity_schedule(step, capacity_max: float,
                      capacity_steps: int) -> tf.Tensor:
    """C(t) = min(C_max, C_max t / T) in nats; C_max from the start if T = 0."""
    step = tf.cast(step, tf.float32)
    if capacity_steps <= 0:
        return tf.constant(capacity_max, tf.float32) + 0.0 * step
    return tf.minimum(capacity_max, capacity_max * step / float(capacity_steps))


def permute_dims(z, seed) -> tf.Tensor:
    """Each column of z [B, D] independently permuted across the batch.

    Args:
        z: [B, D] codes.
        seed: An int or stateless seed [2].

    Returns:
        [B, D]: column d is a permutation of z[:, d]; the permutations of
        the columns are independent, so draws of q(z) become draws of
        prod_d q(z_d) (Kim & Mnih's Algorithm 1).
    """
    z = tf.convert_to_tensor(z)
    keys = tf.random.stateless_uniform(tf.shape(z), seed=_as_seed(seed))
    order = tf.argsort(keys, axis=0)  # [B, D]: a permutation per column
    return tf.transpose(tf.gather(tf.transpose(z), tf.transpose(order),
                                  batch_dims=1))


class Discriminator(tf.Module):
    """FactorVAE's discriminator: an MLP z [N, D] -> 2 logits, class 0 for
    draws of q(z), class 1 for draws of prod_d q(z_d).

    Args:
        latent_dim: D.
        hidden_units: Widths of the hidden layers (Kim & Mnih: 6 of 1000).
        negative_slope: Of the leaky ReLUs (0.2).
    """

    def __init__(self, latent_dim: int, hidden_units: Sequence[int],
                 negative_slope: float = 0.2, name: str = "discriminator"):
        super().__init__(name=name)
        layers = [tf_keras.Input(shape=(int(latent_dim),))]
        for units in hidden_units:
            layers += [
                tf_keras.layers.Dense(int(units), dtype="float32"),
                tf_keras.layers.LeakyReLU(negative_slope, dtype="float32")]
        layers.append(tf_keras.layers.Dense(2, dtype="float32"))
        self.network = tf_keras.Sequential(layers)
        self.latent_dim = int(latent_dim)

    def __call__(self, z) -> tf.Tensor:
        """Logits [N, 2]."""
        return tf.cast(self.network(tf.convert_to_tensor(z, tf.float32)),
                       tf.float32)

    def total_correlation(self, z) -> tf.Tensor:
        """log D(z) / (1 - D(z)) = logit_0 - logit_1, [N]."""
        logits = self(z)
        return logits[:, 0] - logits[:, 1]

    def loss(self, real, fake) -> tf.Tensor:
        """Per-example cross-entropy [N]:
        0.5 (CE(real_i, 0) + CE(fake_i, 1))."""
        def cross_entropy(z, label):
            logits = self(z)
            labels = tf.fill(tf.shape(logits)[:1], label)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels,
                                                                  logits)
        return 0.5 * (cross_entropy(real, 0) + cross_entropy(fake, 1))


# --------------------------------------------------------------------------
# The objectives.

class Auxiliary(NamedTuple):
    """A network an objective trains beside the model, with its own
    optimizer (tf_keras Adam at `learning_rate`), after the main update.

    Attributes:
        name: What it is ("discriminator").
        variables: Its trainable variables.
        learning_rate: Of its Adam (Kim & Mnih's discriminator: 1e-4 with
            beta_1 = 0.5, beta_2 = 0.9).
        loss: `loss(model, batch, seed) -> (scalar loss summed over the
            batch, {name: [N] per-example extras})`.
    """
    name: str
    variables: tuple
    learning_rate: float
    loss: Callable


#: The objectives, by --objective name.
OBJECTIVES: dict[str, type["Objective"]] = {}


def register(cls):
    """Adds an objective class to `OBJECTIVES` under `cls.key`."""
    OBJECTIVES[cls.key] = cls
    return cls


def build_objective(config, dataset_size: int) -> "Objective":
    """The objective of `config.objective` (a `tfpvae.config.TrainConfig`).

    Args:
        config: The run's settings.
        dataset_size: N, the number of training examples.
    """
    objectives.check_choice("objective", config.objective, OBJECTIVES)
    return OBJECTIVES[config.objective](config, int(dataset_size))


class Objective(tf.Module):
    """What training maximises, per example (see the module).

    `name` is the --objective value; `extra_terms` the names of the
    `extras` that `terms` adds; `auxiliary` None or an `Auxiliary`.
    """

    key: str = ""
    extra_terms: tuple[str, ...] = ()

    def __init__(self, config, dataset_size: int):
        super().__init__(name=self.key)
        del config
        self.dataset_size = int(dataset_size)

    @property
    def auxiliary(self) -> Auxiliary | None:
        return None

    def check(self, model) -> None:
        """Raises ValueError (naming the fix) if `model` does not fit."""
        del model

    def terms(self, model, batch: dict, *, kl: str, n_samples: int, beta,
              seed, step, free_bits: float = 0.0,
              gradient_estimator: str = "standard") -> objectives.ELBOResult:
        """The per-example objective and the terms to report, [N] each."""
        raise NotImplementedError


@register
class ELBO(Objective):
    """The model's own training terms: the ELBO (beta-VAE, free bits, IWAE)."""

    key = "elbo"

    def terms(self, model, batch, *, kl, n_samples, beta, seed, step,
              free_bits=0.0, gradient_estimator="standard"):
        del step
        return model.training_terms(
            batch, kl=kl, n_samples=n_samples, beta=beta, seed=seed,
            free_bits=free_bits, gradient_estimator=gradient_estimator)


class Penalised(Objective):
    """The model's ELBO terms plus a penalty on q(z|x): one latent layer,
    a diagonal Gaussian posterior."""

    #: Whether `penalise` reads q(z|x) (an encoder pass of its own).
    needs_posterior = True

    def check(self, model) -> None:
        flag = f"--objective={self.key}"
        if len(model.latent_sizes) != 1:
            raise ValueError(f"{flag} needs one latent layer; use one "
                             f"--latent_dim size (or --objective=elbo).")
        other = sorted(set(model.batch_fields) - {"x", "labels"})
        if other:
            raise ValueError(
                f"{flag} penalises a VAE's ELBO; the {model.family} model "
                f"trains on its own objective (batches with {other}): use "
                f"--objective=elbo.")
        labels = (tf.zeros([1], tf.int32) if model.conditions_on_labels
                  else None)
        posterior = model.encode(tf.zeros((1,) + tuple(model.data_shape)),
                                 labels)
        if not isinstance(posterior, tfd.MultivariateNormalDiag):
            raise ValueError(
                f"{flag} needs a diagonal Gaussian posterior; drop "
                f"--posterior_flow (or use --objective=elbo).")

    def terms(self, model, batch, *, kl, n_samples, beta, seed, step,
              free_bits=0.0, gradient_estimator="standard"):
        if n_samples != 1:
            raise ValueError(f"--objective={self.key} trains on the ELBO; use "
                             f"--n_samples=1.")
        base = model.training_terms(
            batch, kl=kl, n_samples=1, beta=beta, seed=seed,
            free_bits=free_bits, gradient_estimator=gradient_estimator)
        posterior = (model.encode(batch["x"], batch.get("labels"))
                     if self.needs_posterior else None)
        objective, extras = self.penalise(base, posterior, model=model,
                                          beta=beta, seed=seed, step=step)
        return base._replace(objective=objective,
                             extras={**base.extras, **extras})

    def penalise(self, base: objectives.ELBOResult,
                 posterior: tfd.MultivariateNormalDiag, *, model, beta, seed,
                 step) -> tuple[tf.Tensor, dict]:
        """(the per-example objective [N], {name: [N]} for `extra_terms`)."""
        raise NotImplementedError


def _spread(penalty: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A batch-level scalar as [N] shares P / N that sum to P."""
    return tf.broadcast_to(penalty, tf.shape(like)) / tf.cast(
        tf.shape(like)[0], like.dtype)


def _repeat(value: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.broadcast_to(value, tf.shape(like))


@register
class BetaTCVAE(Penalised):
    """ELBO - (tc_weight - 1) TC_i (Chen et al., alpha = gamma = 1)."""

    key = "beta_tcvae"
    extra_terms = ("tc",)

    def __init__(self, config, dataset_size):
        super().__init__(config, dataset_size)
        self.tc_weight = float(config.tc_weight)
        self.estimator = config.tc_estimator
        objectives.check_choice("tc_estimator", self.estimator, TC_ESTIMATORS)

    def penalise(self, base, posterior, *, model, beta, seed, step):
        (z_seed,) = _seeds(seed, 1)
        z = posterior.sample(seed=z_seed)
        tc = total_correlation(z, posterior.mean(), posterior.stddev(),
                               self.dataset_size, self.estimator)
        tc = tc.total_correlation
        return base.objective - (self.tc_weight - 1.0) * tc, {"tc": tc}


@register
class FactorVAE(Penalised):
    """ELBO - tc_weight (logit_0 - logit_1)(z), with a discriminator
    trained beside the model (Kim & Mnih)."""

    key = "factor_vae"
    extra_terms = ("tc", "discriminator_loss")

    def __init__(self, config, dataset_size):
        super().__init__(config, dataset_size)
        if not config.discriminator_learning_rate > 0:
            raise ValueError("--objective=factor_vae trains a discriminator: "
                             "set --discriminator_learning_rate (Kim & Mnih: "
                             "1e-4).")
        if isinstance(config.latent_dim, tuple):
            raise ValueError("--objective=factor_vae needs one latent layer; "
                             "use one --latent_dim size.")
        self.tc_weight = float(config.tc_weight)
        self.learning_rate = float(config.discriminator_learning_rate)
        self.discriminator = Discriminator(config.latent_dim,
                                           config.discriminator_hidden_units)

    def check(self, model) -> None:
        super().check(model)
        if model.latent_dim != self.discriminator.latent_dim:
            raise ValueError(
                f"The discriminator takes {self.discriminator.latent_dim} "
                f"latent dimensions, the model has {model.latent_dim}; build "
                f"the objective from the model's --latent_dim.")

    @property
    def auxiliary(self) -> Auxiliary:
        return Auxiliary(
            name="discriminator",
            variables=tuple(self.discriminator.trainable_variables),
            learning_rate=self.learning_rate, loss=self.discriminator_loss)

    def _cross_entropy(self, posterior, seed) -> tf.Tensor:
        """Per-example loss of the discriminator on real = z ~ q(z|x) and
        fake = permute_dims(another draw); no gradient into the VAE."""
        draw_seed, permute_seed = _seeds(seed, 2)
        z = tf.stop_gradient(posterior.sample(2, seed=draw_seed))  # [2, N, D]
        return self.discriminator.loss(z[0], permute_dims(z[1], permute_seed))

    def discriminator_loss(self, model, batch, seed):
        """The auxiliary loss: (sum over the batch, {"discriminator_loss"})."""
        posterior = model.encode(batch["x"], batch.get("labels"))
        loss = self._cross_entropy(posterior, seed)
        return tf.reduce_sum(loss), {"discriminator_loss": loss}

    def penalise(self, base, posterior, *, model, beta, seed, step):
        z_seed, loss_seed = _seeds(seed, 2)
        tc = self.discriminator.total_correlation(posterior.sample(seed=z_seed))
        extras = {"tc": tc,
                  "discriminator_loss": self._cross_entropy(posterior,
                                                            loss_seed)}
        return base.objective - self.tc_weight * tc, extras


class DIPVAE(Penalised):
    """ELBO - DIP penalty / B (Kumar et al.)."""

    extra_terms = ("dip",)
    #: Whether C adds E[diag(sigma^2)] (DIP-VAE-II), and the paper's
    #: lambda_d / lambda_od when --dip_lambda_d is 0.
    with_scale, lambda_d_ratio = False, 10.0

    def __init__(self, config, dataset_size):
        super().__init__(config, dataset_size)
        self.lambda_od = float(config.dip_lambda_od)
        self.lambda_d = float(config.dip_lambda_d
                              or self.lambda_d_ratio * config.dip_lambda_od)

    def penalise(self, base, posterior, *, model, beta, seed, step):
        scale = posterior.stddev() if self.with_scale else None
        penalty = dip_penalty(aggregate_covariance(posterior.mean(), scale),
                              self.lambda_od, self.lambda_d)
        return (base.objective - _spread(penalty, base.objective),
                {"dip": _repeat(penalty, base.objective)})


@register
class DIPVAEI(DIPVAE):
    key, with_scale, lambda_d_ratio = "dip_vae_i", False, 10.0


@register
class DIPVAEII(DIPVAE):
    key, with_scale, lambda_d_ratio = "dip_vae_ii", True, 1.0


@register
class InfoVAE(Penalised):
    """-distortion - beta rate - mmd_weight MMD^2 / B (Zhao et al.; WAE-MMD
    with --beta=0). The prior's draws are targets (no gradient): a learned
    prior learns through the rate term."""

    key = "info_vae"
    extra_terms = ("mmd",)

    def __init__(self, config, dataset_size):
        super().__init__(config, dataset_size)
        self.mmd_weight = float(config.mmd_weight)
        self.kernel = config.mmd_kernel
        objectives.check_choice("mmd_kernel", self.kernel, KERNELS)

    def penalise(self, base, posterior, *, model, beta, seed, step):
        z_seed, prior_seed = _seeds(seed, 2)
        z = posterior.sample(seed=z_seed)
        prior_z = tf.stop_gradient(
            model.prior.sample(tf.shape(z)[0], seed=prior_seed))
        mmd = mmd_squared(z, prior_z, self.kernel)
        return (base.objective - self.mmd_weight * _spread(mmd, base.objective),
                {"mmd": _repeat(mmd, base.objective)})


@register
class Capacity(Penalised):
    """-distortion - capacity_weight |rate - C(step)| (Burgess et al.);
    --beta and --free_bits do not enter it."""

    key = "capacity"
    extra_terms = ("capacity",)
    needs_posterior = False

    def __init__(self, config, dataset_size):
        super().__init__(config, dataset_size)
        self.capacity_max = float(config.capacity_max)
        self.capacity_steps = int(config.capacity_steps)
        self.capacity_weight = float(config.capacity_weight)

    def penalise(self, base, posterior, *, model, beta, seed, step):
        capacity = capacity_schedule(step, self.capacity_max,
                                     self.capacity_steps)
        objective = -base.distortion - self.capacity_weight * tf.abs(
            base.rate - capacity)
        return objective, {"capacity": _repeat(capacity, base.rate)}
