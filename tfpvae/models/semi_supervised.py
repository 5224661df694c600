"""The semi-supervised VAE M2 of Kingma et al. [1]: labels as a latent
variable where they are missing.

The generative model is p(y) p(z) p(x|z, y), y uniform over K classes; the
inference model is a classifier q(y|x) beside a conditional encoder
q(z|x, y). `SemiSupervisedVAE` composes a conditional `tfpvae.VAE` (one
latent layer or several) with the classifier. Its bounds:

* a labelled example (x, y):  log p(x, y) >= L(x, y) = ELBO(x|y) + log p(y);
* an unlabelled x:  log p(x) >= U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)),

the sum over the K classes taken exactly (no sample of y). Training
maximises, per batch,

    mean over unlabelled x of U(x)
    + mean over labelled (x, y) of [L(x, y) + alpha log q(y|x)],

alpha weighting the classification log-likelihood, which the classifier
would otherwise learn only through U. `log_likelihood(x)` estimates log p(x)
= log sum_y p(y) p(x|y), each p(x|y) by importance sampling with k samples
of q(z|x, y), the sum over y exact. The evaluation reports the
classification error of q(y|x) beside the bound.

A batch (`batch_fields`) carries "x", "labels" and "labelled" (a 0/1 mask):
the trainer fills it with --batch_size unlabelled examples and
--labelled_batch_size labelled ones (`tfpvae.inputs`).

#### References
[1] Kingma, D. P., Rezende, D. J., Mohamed, S. and Welling, M.
    Semi-supervised learning with deep generative models. NeurIPS 2014.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfpvae import networks
from tfpvae import objectives
from tfpvae.models.base import LatentVariableModel
from tfpvae.models.base import as_seed
from tfpvae.models.vae import VAE

tfd = tfp.distributions


class SemiSupervisedVAE(LatentVariableModel):
    """M2: a classifier q(y|x) and a conditional VAE (see the module).

    Args:
        num_classes: K, the classes of y (> 1).
        alpha: Weight of log q(y|x) of labelled examples in training.
        **vae_arguments: The arguments of `tfpvae.VAE` (latent_dim,
            data_shape, the settings, dtype_policy, seed, name); the
            classifier uses the encoder's architecture and widths.
    """

    family = "semi_supervised"
    #: Extra terms training reports (sums over the batch).
    extra_terms = ("classification_loss",)

    def __init__(self, num_classes: int, alpha: float = 1.0, **vae_arguments):
        if num_classes < 2:
            raise ValueError(f"The semi-supervised model needs labels of at "
                             f"least 2 classes; got num_classes={num_classes}.")
        vae = VAE(num_classes=num_classes, **vae_arguments)
        super().__init__(vae.data_shape, vae.latent_sizes, num_classes,
                         name=vae_arguments.get("name"))
        self.vae, self.alpha = vae, float(alpha)
        s = vae.settings
        self.classifier = networks.make_encoder(
            s.architecture, self.data_shape, num_classes,
            hidden_units=s.hidden_units, activation=s.activation,
            conv_filters=s.conv_filters, resnet_blocks=s.resnet_blocks,
            dtype_policy=vae.get_config()["dtype_policy"])
        self.likelihood = vae.likelihood

    # ------------------------------------------------------------------ #
    # Distributions: the conditional VAE's, and the classifier.

    def classify(self, x) -> tfd.Categorical:
        """q(y|x), batch shape [N]."""
        logits = tf.cast(self.classifier(self.check_x(x)), tf.float32)
        return tfd.Categorical(logits=logits)

    @property
    def label_prior(self) -> tfd.Categorical:
        """p(y), uniform over the classes."""
        return tfd.Categorical(logits=tf.zeros([self.num_classes]))

    def _labels_or_guess(self, x, labels):
        """The given labels, or the classifier's most likely ones."""
        if labels is None:
            return tf.argmax(self.classify(x).logits, axis=-1, output_type=tf.int32)
        return self.check_labels(labels)

    def encode(self, x, labels=None) -> tfd.Distribution:
        """q(z|x, y), with y the classifier's guess when labels are None."""
        return self.vae.encode(x, self._labels_or_guess(x, labels))

    def decode(self, z, labels=None) -> tfd.Distribution:
        return self.vae.decode(z, labels)

    @property
    def prior(self) -> tfd.Distribution:
        return self.vae.prior

    def decode_top(self, z_top, labels=None, lower="mean", seed=None):
        return self.vae.decode_top(z_top, labels, lower, seed)

    def posterior_mean(self, x, labels=None) -> tf.Tensor:
        return self.vae.posterior_mean(x, self._labels_or_guess(x, labels))

    def layer_means(self, x, labels=None) -> list[tf.Tensor]:
        return self.vae.layer_means(x, self._labels_or_guess(x, labels))

    @property
    def has_analytic_kl(self) -> bool:
        return self.vae.has_analytic_kl

    def no_analytic_kl_reason(self) -> str:
        return self.vae.no_analytic_kl_reason()

    @property
    def output_size(self) -> int:
        return self.vae.output_size

    @property
    def conditions_on_labels(self) -> bool:
        """False: the bounds are on log p(x); labels are what q(y|x) predicts."""
        return False

    def sample(self, n: int, seed=None, mean: bool = False, *, labels=None):
        """x ~ p(x|z, y) with z ~ p(z) and the given labels, or y ~ p(y)."""
        y_seed, seed = tfp.random.split_seed(as_seed(seed), n=2)
        if labels is None:
            labels = self.label_prior.sample(n, seed=y_seed)
        return self.vae.sample(n, seed=seed, mean=mean, labels=labels)

    def reconstruct(self, x, seed=None, mean: bool = True, *, labels=None):
        return self.vae.reconstruct(x, seed=seed, mean=mean,
                                    labels=self._labels_or_guess(x, labels))

    # ------------------------------------------------------------------ #
    # Bounds.

    def _per_class(self, x, fn):
        """fn(x repeated K times, labels 0..K-1 repeated) reshaped to
        [K, N, ...]: every example under every class."""
        n = tf.shape(x)[0]
        labels = tf.repeat(tf.range(self.num_classes, dtype=tf.int32), n)
        x_all = tf.tile(x, tf.concat([[self.num_classes],
                                      tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        out = fn(x_all, labels)
        return tf.nest.map_structure(
            lambda t: tf.reshape(t, tf.concat([[self.num_classes, n],
                                               tf.shape(t)[1:]], 0)), out)

    def elbo(self, x, kl: str = "analytic", n_samples: int = 1, beta=1.0,
             seed=None, *, labels=None,
             free_bits: float = 0.0) -> objectives.ELBOResult:
        """L(x, y) = ELBO(x|y) + log p(y) for labels; U(x) without them
        (the sum over classes exact)."""
        x = self.check_x(x)
        log_py = -math.log(self.num_classes)
        if labels is not None:
            terms = self.vae.elbo(x, kl, n_samples, beta, seed, labels=labels,
                                  free_bits=free_bits)
            return terms._replace(elbo=terms.elbo + log_py,
                                  objective=terms.objective + log_py)
        per_class = self._per_class(x, lambda xs, ys: self.vae.elbo(
            xs, kl, n_samples, beta, seed, labels=ys, free_bits=free_bits))
        return marginal_bound(per_class, self.classify(x), log_py)

    def evaluation_elbo(self, x, kl: str, n_samples: int, seed, *,
                        labels=None) -> objectives.ELBOResult:
        return self.elbo(x, kl, n_samples, 1.0, seed, labels=labels)

    def iwae(self, x, k: int, beta=1.0, seed=None, *, labels=None,
             gradient_estimator: str = "standard") -> objectives.ELBOResult:
        raise ValueError("The semi-supervised model trains on its ELBO "
                         "(--n_samples=1); its log p(x) estimate is "
                         "log_likelihood.")

    def log_likelihood(self, x, k: int = 5000, seed=None,
                       chunk_size: int | None = None, *,
                       labels=None) -> tf.Tensor:
        """log p(x, y) with labels; else log p(x) = log sum_y p(y) p(x|y)."""
        x = self.check_x(x)
        log_py = -math.log(self.num_classes)
        if labels is not None:
            return self.vae.log_likelihood(x, k, seed, chunk_size,
                                           labels=labels) + log_py
        per_class = self._per_class(x, lambda xs, ys: self.vae.log_likelihood(
            xs, k, seed, chunk_size, labels=ys))
        return tf.reduce_logsumexp(per_class + log_py, axis=0)

    # ------------------------------------------------------------------ #
    # Training and evaluation.

    @property
    def batch_fields(self) -> tuple[str, ...]:
        return ("x", "labels", "labelled")

    def training_terms(self, batch: dict, *, kl: str, n_samples: int, beta,
                       seed, free_bits: float = 0.0,
                       gradient_estimator: str = "standard"
                       ) -> objectives.ELBOResult:
        """Per example: U(x) for unlabelled examples, and
        (L(x, y) + alpha log q(y|x)) * (unlabelled / labelled examples) for
        labelled ones, so that the sum over the batch divided by the number
        of unlabelled examples is the mean of U plus the mean of the
        labelled terms. `extras["classification_loss"]` is -log q(y|x),
        scaled alike."""
        del gradient_estimator
        if n_samples != 1:
            raise ValueError("The semi-supervised model trains on its ELBO: "
                             "use --n_samples=1.")
        x, labelled = batch["x"], tf.cast(batch["labelled"], tf.bool)
        labels = tf.where(labelled, tf.cast(batch["labels"], tf.int32), 0)
        unlabelled = self.elbo(x, kl, 1, beta, seed, free_bits=free_bits)
        given = self.elbo(x, kl, 1, beta, seed, labels=labels,
                          free_bits=free_bits)
        log_q = self.classify(x).log_prob(labels)
        count = lambda mask: tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)
        scale = count(~labelled) / count(labelled)
        pick = lambda lab, unl: tf.where(labelled, lab * scale, unl)
        zero = tf.zeros_like(log_q)
        return objectives.ELBOResult(
            elbo=tf.where(labelled, zero, unlabelled.elbo),
            rate=tf.where(labelled, zero, unlabelled.rate),
            distortion=tf.where(labelled, zero, unlabelled.distortion),
            objective=pick(given.objective + self.alpha * log_q,
                           unlabelled.objective),
            layer_rates=tuple(tf.where(labelled, zero, r)
                              for r in unlabelled.layer_rates),
            extras={"classification_loss": pick(-log_q, zero)})

    def evaluation_metrics(self, x, labels=None) -> dict:
        """classification_error: 1 where argmax q(y|x) is not the label."""
        if labels is None:
            return {}
        guess = tf.argmax(self.classify(x).logits, axis=-1, output_type=tf.int32)
        return {"classification_error": tf.cast(
            tf.not_equal(guess, tf.cast(labels, tf.int32)), tf.float32)}

    # ------------------------------------------------------------------ #
    # Configuration.

    def get_config(self) -> dict:
        return {**self.vae.get_config(), "family": self.family,
                "alpha": self.alpha}

    @classmethod
    def from_config(cls, config: dict) -> "SemiSupervisedVAE":
        config = {k: v for k, v in config.items()
                  if k not in ("family", "custom_networks")}
        return cls(**config)

    @classmethod
    def config_defaults(cls) -> dict:
        return VAE.config_defaults() | {"family": cls.family, "alpha": 1.0}


def marginal_bound(per_class: objectives.ELBOResult,
                   classifier: tfd.Categorical,
                   log_py: float) -> objectives.ELBOResult:
    """U(x) = sum_y q(y|x) [L(x, y)] + H(q(y|x)) from the terms of every
    class ([K, N] each): the expectation over q(y|x), exact."""
    q = tf.transpose(classifier.probs_parameter())  # [K, N]
    expect = lambda t: tf.reduce_sum(q * t, axis=0)
    entropy = classifier.entropy()
    rate = expect(per_class.rate) - entropy - log_py  # KL over (y, z)
    return objectives.ELBOResult(
        elbo=expect(per_class.elbo) + log_py + entropy,
        rate=rate, distortion=expect(per_class.distortion),
        objective=expect(per_class.objective) + log_py + entropy,
        layer_rates=tuple(expect(r) for r in per_class.layer_rates))
