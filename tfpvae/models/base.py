"""The model interface that the trainer, the evaluator, the figures and the
export use, and everything that is written once against it.

A model family subclasses `LatentVariableModel` and defines the
distributions: `encode(x, labels)` returns q(z|x) (a `tfd.JointDistribution`
over the layers when there are several), `decode(z, labels)` returns
p(x|z), `prior` is p(z), `posterior_mean` and `decode_top` give the figures
a point of the top latent layer and back, and `get_config` what rebuilds
the model. From those, this class provides sampling, reconstruction, the
bounds (`elbo`, `iwae`, `loss`: `tfpvae.objectives` on the distributions)
and `log_likelihood`, an importance-sampled estimate of log p(x) with k
samples drawn in chunks of a fixed memory budget inside one compiled
`tf.while_loop`.

The hooks of training have defaults that a family overrides only when it
needs to: `batch_fields` (what a batch of data carries), `training_terms`
(the per-example objective and the terms to report), `initialize_from_data`
and `evaluation_metrics`. docs/howto/model_family.md walks through a new
family; docs/design.md has the whole picture.

Labels. A model with `num_classes > 0` is conditional: `encode`, `decode`,
`sample`, the bounds and `log_likelihood` take `labels` ([N] integers in
[0, num_classes)), and the bounds are bounds on log p(x|y).
"""

from __future__ import annotations

import abc
import math
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfpvae import objectives

tfd = tfp.distributions


def as_seed(seed, allow_none: bool = False):
    """Turns an int / [2] seed into a stateless seed tensor; None draws one."""
    if seed is None:
        if allow_none:
            return None
        return tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)


class LatentVariableModel(tf.Module, metaclass=abc.ABCMeta):
    """The interface of a latent-variable model, and what derives from it.

    Args:
        data_shape: Shape of one example, e.g. (28, 28, 1) or (18,).
        latent_sizes: Size of each latent layer, nearest the data first.
        num_classes: Number of label classes the model is conditioned on
            (0: unconditional).
        name: Module name.
    """

    #: The family's name in `tfpvae.models.FAMILIES` and model_config.json.
    family: str = ""
    #: Names of the further terms `training_terms` reports in `extras`.
    extra_terms: tuple[str, ...] = ()

    def __init__(self, data_shape: Sequence[int], latent_sizes: Sequence[int],
                 num_classes: int = 0, name: str | None = None):
        super().__init__(name=name)
        data_shape = tuple(int(d) for d in data_shape)
        if not data_shape or any(d <= 0 for d in data_shape):
            raise ValueError(f"data_shape must be a tuple of positive sizes; "
                             f"got {data_shape!r}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0; got {num_classes}.")
        self.data_shape = data_shape
        self.latent_sizes = tuple(int(s) for s in latent_sizes)
        self.num_classes = int(num_classes)
        self._log_likelihood_fn = tf.function(self._log_likelihood_chunks)

    # ------------------------------------------------------------------ #
    # What a family defines.

    @abc.abstractmethod
    def encode(self, x, labels=None) -> tfd.Distribution:
        """q(z|x): batch shape [N]; a joint distribution over the layers
        when there are several."""

    @abc.abstractmethod
    def decode(self, z, labels=None) -> tfd.Distribution:
        """p(x|z) for z with leading batch dimensions; event `data_shape`."""

    @property
    @abc.abstractmethod
    def prior(self) -> tfd.Distribution:
        """p(z), with the structure of the posterior's samples."""

    @abc.abstractmethod
    def posterior_mean(self, x, labels=None) -> tf.Tensor:
        """A point of the top latent layer per example, [N, latent_dim]."""

    @abc.abstractmethod
    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments, with "family"."""

    @classmethod
    def from_config(cls, config: dict) -> "LatentVariableModel":
        """Rebuilds the model (untrained) from `get_config()`."""
        return cls(**{k: v for k, v in config.items() if k != "family"})

    @classmethod
    def config_defaults(cls) -> dict:
        """The `get_config()` values of settings left at their defaults."""
        return {"family": cls.family, "num_classes": 0}

    def decode_top(self, z_top, labels=None, lower: str = "mean",
                   seed=None) -> tfd.Distribution:
        """p(x|z_top) for a point of the top latent layer [N, latent_dim]:
        the lower layers at their prior means (`lower="mean"`) or drawn
        from the prior (`lower="sample"`). With one layer, `decode`."""
        del lower, seed
        return self.decode(z_top, labels)

    def layer_means(self, x, labels=None) -> list[tf.Tensor]:
        """Each latent layer's posterior mean, nearest the data first (for
        the active units of each layer). With one layer,
        `[posterior_mean(x)]`."""
        return [self.posterior_mean(x, labels)]

    def sampling_posterior(self, x, labels=None):
        """(the posterior the ELBO draws from, the one its analytic KL
        measures or None if the same); see `VAE.epsilon_std`."""
        return self.encode(x, labels), None

    @property
    def has_analytic_kl(self) -> bool:
        """Whether every layer's KL term has a closed form."""
        return False

    @property
    def conditions_on_labels(self) -> bool:
        """Whether the bounds are on log p(x|y) and need the labels (a
        conditional model); the evaluation passes them only then."""
        return self.num_classes > 0

    def no_analytic_kl_reason(self) -> str:
        """What has no closed form (for the error of kl="analytic")."""
        return f"this {type(self).__name__}"

    @property
    def output_size(self) -> int:
        """Numbers the decoder outputs per example (the chunking budget)."""
        return math.prod(self.data_shape)

    # ------------------------------------------------------------------ #
    # Shapes and inputs.

    @property
    def latent_dim(self) -> int:
        """The size of the top latent layer: the space of `posterior_mean`,
        `decode_top`, the figures and the disentanglement scores."""
        return self.latent_sizes[-1]

    def check_x(self, x) -> tf.Tensor:
        """x as float32, or ValueError when it does not have `data_shape`."""
        x = tf.convert_to_tensor(x, tf.float32)
        if tuple(x.shape[1:]) != self.data_shape and x.shape.rank is not None:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this model expects "
                f"[N, {', '.join(map(str, self.data_shape))}] (data_shape="
                f"{self.data_shape}).")
        return x

    def check_labels(self, labels, n=None):
        """labels as int32 [N], None for an unconditional model, or a
        ValueError that names the fix."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError(
                    "This model is not conditional (num_classes=0): drop "
                    "labels, or build it with num_classes (--conditional).")
            return None
        if labels is None:
            raise ValueError(
                f"This model is conditional on labels (num_classes="
                f"{self.num_classes}): pass labels, [N] integers in "
                f"[0, {self.num_classes}).")
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise ValueError(f"labels must be integers in [0, "
                             f"{self.num_classes}); got {labels.dtype.name}.")
        labels = tf.cast(labels, tf.int32)
        if n is not None and labels.shape.rank == 0:
            labels = tf.fill([n], labels)
        if tf.executing_eagerly():
            values = labels.numpy()
            if values.size and (values.min() < 0
                                or values.max() >= self.num_classes):
                raise ValueError(
                    f"labels must lie in [0, {self.num_classes}); got values "
                    f"in [{values.min()}, {values.max()}].")
        return labels

    # ------------------------------------------------------------------ #
    # Written once against the distributions.

    def sample(self, n: int, seed=None, mean: bool = False, *,
               labels=None) -> tf.Tensor:
        """Draws n examples from the model: z ~ p(z), then x ~ p(x|z).

        Args:
            n: Number of examples.
            seed: An int or stateless seed (shape [2]) for reproducible draws.
            mean: Return the decoder mean E[x|z] instead of a draw.
            labels: For a conditional model, the class of each example ([n]
                integers, or one integer for all).

        Returns:
            A float32 tensor `[n, *data_shape]`.
        """
        labels = self.check_labels(labels, n)
        z_seed, x_seed = tfp.random.split_seed(as_seed(seed), n=2)
        z = self.prior.sample(n, seed=z_seed)
        p = self.decode(z, labels)
        return p.mean() if mean else tf.cast(p.sample(seed=x_seed), tf.float32)

    def reconstruct(self, x, seed=None, mean: bool = True, *,
                    labels=None) -> tf.Tensor:
        """Encodes x, draws z ~ q(z|x) and returns the decoder mean or a draw."""
        labels = self.check_labels(labels)
        z_seed, x_seed = tfp.random.split_seed(as_seed(seed), n=2)
        z = self.encode(x, labels).sample(seed=z_seed)
        p = self.decode(z, labels)
        return p.mean() if mean else tf.cast(p.sample(seed=x_seed), tf.float32)

    def elbo(self, x, kl: str = "analytic", n_samples: int = 1, beta=1.0,
             seed=None, *, labels=None,
             free_bits: float = 0.0) -> objectives.ELBOResult:
        """The ELBO, per example, averaged over `n_samples` posterior draws.

        Args:
            x: Data `[N, *data_shape]`.
            kl: "analytic" (closed form, per layer; only where every layer
                has one) or "mc" (Monte Carlo).
            n_samples: Posterior draws per example.
            beta: Weight of the KL term in `objective` (beta-VAE).
            seed: An int or stateless seed, or None.
            labels: The labels of x, for a conditional model.
            free_bits: Floor of each layer's rate in `objective` (nats).

        Returns:
            `ELBOResult(elbo, rate, distortion, objective, layer_rates)`,
            each [N].
        """
        objectives.check_choice("kl", kl, objectives.KL_CHOICES)
        if kl == "analytic" and not self.has_analytic_kl:
            raise ValueError(f"kl='analytic' has no closed form for "
                             f"{self.no_analytic_kl_reason()}; use kl='mc'.")
        x, labels = self.check_x(x), self.check_labels(labels)
        posterior, kl_posterior = self.sampling_posterior(x, labels)
        return objectives.evidence_lower_bound(
            x, posterior, self.prior, lambda z: self.decode(z, labels),
            kl=kl, n_samples=n_samples, beta=beta,
            seed=as_seed(seed, allow_none=True), kl_posterior=kl_posterior,
            free_bits=free_bits)

    def evaluation_elbo(self, x, kl: str, n_samples: int, seed, *,
                        labels=None) -> objectives.ELBOResult:
        """The true ELBO (the posterior as `encode` gives it, beta = 1) that
        the evaluation reports; `elbo` draws from `sampling_posterior`."""
        x, labels = self.check_x(x), self.check_labels(labels)
        return objectives.evidence_lower_bound(
            x, self.encode(x, labels), self.prior,
            lambda z: self.decode(z, labels), kl=kl, n_samples=n_samples,
            seed=seed)

    def iwae(self, x, k: int, beta=1.0, seed=None, *, labels=None,
             gradient_estimator: str = "standard") -> objectives.ELBOResult:
        """The importance-weighted bound IWAE_k per example (see objectives)."""
        x, labels = self.check_x(x), self.check_labels(labels)
        return objectives.importance_weighted_bound(
            x, self.encode(x, labels), self.prior,
            lambda z: self.decode(z, labels), k=k, beta=beta,
            seed=as_seed(seed, allow_none=True),
            gradient_estimator=gradient_estimator)

    def loss(self, x, kl: str = "analytic", k: int = 1, beta=1.0, seed=None,
             *, labels=None, free_bits: float = 0.0,
             gradient_estimator: str = "standard"):
        """The training loss and its terms.

        With k == 1 the loss is the negative beta-ELBO (`elbo`, with `kl`
        and `free_bits`); with k > 1 it is the negative importance-weighted
        bound IWAE_k (`iwae`, with `gradient_estimator`; its rate is always
        the Monte Carlo estimate).

        Returns:
            (scalar loss averaged over the batch, `ELBOResult` of [N] terms).
        """
        if k > 1:
            result = self.iwae(x, k=k, beta=beta, seed=seed, labels=labels,
                               gradient_estimator=gradient_estimator)
        else:
            result = self.elbo(x, kl=kl, beta=beta, seed=seed, labels=labels,
                               free_bits=free_bits)
        return -tf.reduce_mean(result.objective), result

    def log_likelihood(self, x, k: int = 5000, seed=None,
                       chunk_size: int | None = None, *,
                       labels=None) -> tf.Tensor:
        """Importance-sampled estimate of log p(x) per example (IWAE_k).

        The k samples are drawn in chunks inside one compiled `tf.while_loop`
        (no Python loop over samples), with a running log-sum-exp, so memory
        stays bounded: a chunk's decoder output holds at most
        `objectives.CHUNK_BUDGET` numbers.

        Args:
            x: Data `[N, *data_shape]`.
            k: Number of importance samples.
            seed: An int or stateless seed, or None.
            chunk_size: Samples per chunk (default: from the memory budget).
            labels: The labels of x, for a conditional model (the estimate
                is then of log p(x|y)).

        Returns:
            A float32 tensor [N]: log (1/k) sum_i p(x, z_i) / q(z_i|x).
        """
        x, labels = self.check_x(x), self.check_labels(labels)
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}.")
        if chunk_size is None:
            per_sample = int(x.shape[0]) * max(self.output_size, 1)
            chunk_size = max(1, min(k, objectives.CHUNK_BUDGET // per_sample))
        chunk_size = min(int(chunk_size), k)
        return self._log_likelihood_fn(x, labels, k=k, chunk_size=chunk_size,
                                       seed=as_seed(seed))

    def _log_likelihood_chunks(self, x, labels, k, chunk_size, seed):
        posterior = self.encode(x, labels)
        prior = self.prior
        n_full, rest = divmod(k, chunk_size)

        def chunk_lse(size, chunk_seed):
            log_px_z, log_pz, log_q = objectives.log_importance_weights(
                x, posterior, prior, lambda z: self.decode(z, labels), size,
                seed=chunk_seed)
            return tf.reduce_logsumexp(log_px_z + log_pz - log_q, axis=0)

        def body(i, acc):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i)
            lse = chunk_lse(chunk_size, chunk_seed)
            return i + 1, tf.reduce_logsumexp(tf.stack([acc, lse]), axis=0)

        acc = tf.fill(tf.shape(x)[:1], tf.constant(-np.inf, tf.float32))
        _, acc = tf.while_loop(lambda i, _: i < n_full, body,
                               (tf.constant(0), acc))
        if rest:
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, n_full)
            acc = tf.reduce_logsumexp(
                tf.stack([acc, chunk_lse(rest, chunk_seed)]), axis=0)
        return acc - math.log(k)

    # ------------------------------------------------------------------ #
    # Hooks of training and evaluation, with their defaults.

    @property
    def batch_fields(self) -> tuple[str, ...]:
        """The fields a batch of training data carries: "x", and "labels"
        for a conditional model."""
        return ("x", "labels") if self.num_classes else ("x",)

    def training_terms(self, batch: dict, *, kl: str, n_samples: int, beta,
                       seed, free_bits: float = 0.0,
                       gradient_estimator: str = "standard"
                       ) -> objectives.ELBOResult:
        """The per-example terms of the training objective for a batch
        (`batch_fields` -> tensors): by default `loss`'s `ELBOResult`."""
        _, terms = self.loss(batch["x"], kl=kl, k=n_samples, beta=beta,
                             seed=seed, labels=batch.get("labels"),
                             free_bits=free_bits,
                             gradient_estimator=gradient_estimator)
        return terms

    def initialize_from_data(self, x: np.ndarray, rng: np.random.Generator,
                             labels: np.ndarray | None = None) -> bool:
        """Data-dependent initialisation before the first step of a new run
        (the VampPrior's pseudo-inputs); returns whether it did anything."""
        del x, rng, labels
        return False

    def evaluation_metrics(self, x, labels=None) -> dict:
        """Per-example scores [N] the evaluation averages besides the bounds
        (e.g. M2's classification error); none by default."""
        del x, labels
        return {}
