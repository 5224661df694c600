"""Training and evaluation speed of tfpvae, beside hand-written TensorFlow.

    python tools/benchmark.py --output=benchmark.json
    python tools/benchmark.py --models=mlp --xla=on --batch_size=1000 \\
        --mixed_precision=mixed_bfloat16

measures in one process, and prints as a table (and writes as JSON with
`--output`):

* Training throughput (images/s, after warm-up) of the training step that
  `python -m tfpvae.main` runs (`train.build_train_step`), for the models of
  `MODELS`: the MLP 784-500-500-20 with a Bernoulli likelihood, the
  convolutional VAE, the MLP with a 4-layer IAF posterior and (optionally)
  the MLP trained on IWAE k = 10; each with and without XLA (`--xla`).
* Beside each, a hand-written baseline of the same model (`HandWrittenVAE`):
  a bare `tf.function` step on plain TF ops (tf.matmul / tf.nn.conv2d,
  sigmoid cross-entropy, closed-form KL, reparameterisation by hand) with the
  same tf_keras Adam, started from the package model's weights. Package and
  baseline run in alternating blocks of `--steps` steps (ABBA order), so that
  machine noise hits both alike; `ratio` = package / baseline images/s is the
  cost of tfpvae's abstractions.
* Evaluation throughput of `VAE.log_likelihood` at k = `--eval_k` (images/s),
  and whether its k samples run as one compiled `tf.while_loop`.
* Whether the input pipeline keeps up: steps/s of the package step fed by
  `data.make_train_dataset` against the same step on one constant in-memory
  batch (alternating blocks), and the examples/s that the CLI loop
  (`train.train_and_evaluate`) reports for the same model and data.

Every step is timed up to reading its result, as the CLI loop reads the loss
of every step; the table gives the images/s over all timed steps and the
median and 10th/90th percentiles of the step time. Run it on a quiet machine
(the load average is recorded before and after) and compare ratios rather
than absolute numbers across machines. `docs/performance.md` has the results
and how to read them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import app
from absl import flags
from absl import logging

from tfpvae import data as data_lib
from tfpvae import networks
from tfpvae import run_dir
from tfpvae import train
from tfpvae.config import TrainConfig
from tfpvae import VAE
from tfpvae import evaluation
from tfpvae.train import step as train_step_lib

#: The benchmarked models: `TrainConfig` settings on top of the defaults
#: (latent_dim 20, MLP 500-500, relu, Bernoulli likelihood, Adam 1e-3).
MODELS: dict[str, dict] = {
    # The MLP 784-500-500-20 (Kingma & Welling's MNIST model).
    "mlp": {},
    # The convolutional networks of the Keras VAE tutorial
    # (flags/conv_digits_1_8.cfg): 3x3 stride-2 convolutions with 32 and 64
    # filters and a 16-unit dense layer, transposed convolutions back.
    "conv": dict(architecture="conv", conv_filters=(32, 64),
                 hidden_units=(16,)),
    # The MLP with a 4-layer IAF posterior (two 256-unit MADE layers each).
    "iaf": dict(posterior_flow="iaf", flow_layers=4,
                flow_hidden_units=(256, 256)),
    # The MLP trained on the importance-weighted bound with k = 10.
    "iwae": dict(n_samples=10),
    # A two-layer ladder VAE (latent 32 and 16, 256-unit networks between
    # the layers) on the same MLP encoder and decoder.
    "hvae": dict(latent_dim=(32, 16), latent_hidden_units=(256,)),
    # Residual convolutional networks: 32 and 64 channels, two blocks per
    # resolution, a 256-unit dense layer.
    "resnet": dict(architecture="resnet", conv_filters=(32, 64),
                   hidden_units=(256,)),
}
DEFAULT_MODELS = ("mlp", "conv", "iaf", "hvae", "resnet")

#: The models `HandWrittenVAE` writes by hand; the others are measured with
#: XLA on against XLA off (`measure_xla`).
BASELINE_MODELS = ("mlp", "conv", "iaf", "iwae")

#: Where the real data is looked for with --data=auto (the shared data
#: folder beside the checkout, see tests/conftest.py).
_DATA_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz",
    Path("../shared/data/binarized_mnist.npz"),
)

_XLA_SETTINGS = {"both": (False, True), "on": (True,), "off": (False,)}
#: The XLA setting of the input-pipeline measurement for each `--xla`.
_PIPELINE_XLA = {"both": "auto", "on": True, "off": False}

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags (on absl's FLAGS by default)."""
    flags.DEFINE_list("models", list(DEFAULT_MODELS),
                      f"Models to measure, from {', '.join(MODELS)}.",
                      flag_values=flag_values)
    flags.DEFINE_integer("steps", 50, "Training steps per timed block.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("blocks", 10, "Timed blocks per side; the package "
                         "and the baseline alternate block by block.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("warmup", 20, "Untimed steps per side after "
                         "compilation.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 100, "Training batch size.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum("xla", "both", list(_XLA_SETTINGS),
                      "Measure the training step with XLA (jit_compile) on, "
                      "off, or both. The input pipeline is measured with "
                      "the one setting, or with both with what "
                      "--jit_compile=auto picks.", flag_values=flag_values)
    flags.DEFINE_enum("mixed_precision", "none",
                      ["none", "mixed_bfloat16", "mixed_float16"],
                      "Compute precision of the networks, as the trainer's "
                      "flag (the baseline computes in the same precision).",
                      flag_values=flag_values)
    flags.DEFINE_integer("eval_k", 1000, "Importance samples of the "
                         "log_likelihood measurement; 0 skips it.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("eval_batch_size", 100, "Images per log_likelihood "
                         "call.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("eval_repeats", 2, "Timed log_likelihood calls per "
                         "model (after one untimed call).", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_bool("pipeline", True, "Measure the input pipeline and the "
                      "CLI loop.", flag_values=flag_values)
    flags.DEFINE_string("data", "auto",
                        "Binary 28x28 images (.npz) to train on. 'auto': "
                        "../shared/data/binarized_mnist.npz when present, "
                        "else scikit-learn's 8x8 digits upsampled to 28x28 "
                        "and binarized.", flag_values=flag_values)
    flags.DEFINE_string("output", "", "Write the results as JSON to this "
                        "file.", flag_values=flag_values)
    flags.register_validator(
        "models", lambda names: bool(names) and set(names) <= set(MODELS),
        f"--models must be a comma-separated list of {', '.join(MODELS)}.",
        flag_values=flag_values)


# --------------------------------------------------------------------------
# The hand-written baseline.

class HandWrittenVAE(tf.Module):
    """The benchmarked models written by hand with plain TensorFlow ops.

    The same networks, noise and bound as `tfpvae.VAE` with a normal prior
    and a Bernoulli likelihood, without tf_keras layers or TFP
    distributions: dense layers are `tf.matmul`, convolutions
    `tf.nn.conv2d(_transpose)`, the distortion is the sigmoid cross-entropy,
    the rate the closed-form KL (or log q - log p for a flow and IWAE), z is
    loc + scale * eps by hand, and an IAF layer is a masked MLP (MADE [1])
    with z' = (z - shift) * exp(-log_scale).

    The noise eps ~ N(0, I) is drawn as TFP draws it (a stateless normal of
    shape [k, latent, batch], transposed), from the same seed stream as the
    package's training step, so that with `assign_from(model)` one step of
    each computes the same loss and the same update.

    Args:
        config: The settings of the model (`TrainConfig`).
        data_shape: Shape of one example, e.g. (28, 28, 1).

    #### References
    [1] Germain, M. et al. MADE: masked autoencoder for distribution
        estimation. ICML 2015.
    """

    def __init__(self, config: TrainConfig, data_shape):
        super().__init__(name="hand_written_vae")
        if (config.likelihood != "bernoulli" or config.prior != "normal"
                or config.posterior_flow not in ("none", "iaf")
                or config.flow_context_units or config.epsilon_std != 1.0):
            raise ValueError("The hand-written baseline covers the Bernoulli "
                             "likelihood, the normal prior, no flow or an IAF "
                             "without context, and epsilon_std = 1.")
        self.config = config
        self.data_shape = tuple(int(d) for d in data_shape)
        self.latent_dim = d = config.latent_dim
        self.k = config.n_samples
        self.compute_dtype = {"mixed_bfloat16": tf.bfloat16,
                              "mixed_float16": tf.float16}.get(
                                  config.mixed_precision, tf.float32)
        self.activation = networks.get_activation(config.activation)
        rng = np.random.default_rng(config.seed)
        pixels = math.prod(self.data_shape)
        units = tuple(config.hidden_units)

        # Encoder: [convolutions,] dense layers, then 2 * latent_dim outputs.
        self.encoder_convs, self.decoder_convs = [], []
        width = pixels
        if config.architecture == "conv":
            channels = self.data_shape[-1]
            for f in config.conv_filters:
                self.encoder_convs.append(
                    _conv_weights(rng, (3, 3, channels, f), bias_size=f))
                channels = f
            height, wide = self.data_shape[:2]
            factor = 2 ** len(config.conv_filters)
            width = (math.ceil(height / factor) * math.ceil(wide / factor)
                     * channels)
        self.encoder_dense = _dense_stack(rng, width, units + (2 * d,))

        # Decoder: the mirrored dense layers, then either the pixels' logits
        # (mlp) or a feature map upsampled by transposed convolutions.
        if config.architecture == "conv":
            height, wide, channels = self.data_shape
            factor = 2 ** len(config.conv_filters)
            self.map_shape = (math.ceil(height / factor),
                              math.ceil(wide / factor),
                              config.conv_filters[-1])
            self.decoder_dense = _dense_stack(
                rng, d, tuple(reversed(units)) + (math.prod(self.map_shape),))
            filters = tuple(reversed(config.conv_filters))
            previous = filters[0]
            for f in filters + (channels,):
                # Transposed-convolution kernels are [h, w, out, in].
                self.decoder_convs.append(
                    _conv_weights(rng, (3, 3, f, previous), bias_size=f))
                previous = f
        else:
            self.decoder_dense = _dense_stack(
                rng, d, tuple(reversed(units)) + (pixels,))

        # IAF: per layer a MADE (masked dense layers) and the gates of its
        # shift and log-scale.
        self.made_masks, self.made_weights, self.gates = [], [], []
        if config.posterior_flow == "iaf":
            self.made_masks = [tf.constant(m, tf.float32) for m in
                               made_masks(d, config.flow_hidden_units, params=2)]
            for i in range(config.flow_layers):
                sizes = tuple(config.flow_hidden_units) + (2 * d,)
                self.made_weights.append(_dense_stack(rng, d, sizes))
                self.gates.append(tf.Variable(tf.zeros([2]), name=f"gate_{i}"))

    # ------------------------------------------------------------------ #

    def _dense(self, h, weights, activate_last: bool):
        for i, (kernel, bias) in enumerate(weights):
            h = tf.matmul(h, tf.cast(kernel, h.dtype)) + tf.cast(bias, h.dtype)
            if i + 1 < len(weights) or activate_last:
                h = self.activation(h)
        return h

    def encode(self, x):
        """Returns the posterior loc and scale [B, latent] of x [B, ...]."""
        h = tf.cast(x, self.compute_dtype)
        for kernel, bias in self.encoder_convs:
            h = self.activation(tf.nn.bias_add(tf.nn.conv2d(
                h, tf.cast(kernel, h.dtype), 2, "SAME"), tf.cast(bias, h.dtype)))
        h = tf.reshape(h, [tf.shape(h)[0], -1])
        h = tf.cast(self._dense(h, self.encoder_dense, False), tf.float32)
        d = self.latent_dim
        return h[:, :d], tf.nn.softplus(h[:, d:]) + 1e-5

    def decode_logits(self, z):
        """Returns the Bernoulli logits [M, pixels] of z [M, latent]."""
        h = tf.cast(z, self.compute_dtype)
        if not self.decoder_convs:
            h = self._dense(h, self.decoder_dense, False)
            return tf.cast(h, tf.float32)
        h = self._dense(h, self.decoder_dense, True)
        h = tf.reshape(h, (-1,) + self.map_shape)
        last = len(self.decoder_convs) - 1
        for i, (kernel, bias) in enumerate(self.decoder_convs):
            stride = 1 if i == last else 2
            n, height, width = tf.shape(h)[0], h.shape[1], h.shape[2]
            h = tf.nn.conv2d_transpose(
                h, tf.cast(kernel, h.dtype),
                tf.stack([n, height * stride, width * stride, kernel.shape[2]]),
                stride, "SAME")
            h = tf.nn.bias_add(h, tf.cast(bias, h.dtype))
            if i < last:
                h = self.activation(h)
        height, width = self.data_shape[:2]
        h = h[:, :height, :width, :]
        return tf.cast(tf.reshape(h, [tf.shape(h)[0], -1]), tf.float32)

    def _made(self, i, z):
        """shift, log_scale [..., latent] of IAF layer i at z [..., latent]."""
        d = self.latent_dim
        h = tf.reshape(z, [-1, d])
        weights = self.made_weights[i]
        for j, ((kernel, bias), mask) in enumerate(zip(weights, self.made_masks)):
            h = tf.matmul(h, kernel * mask) + bias
            if j + 1 < len(weights):
                h = self.activation(h)
        out = tf.reshape(h, tf.concat([tf.shape(z), [2]], 0))
        return out[..., 0] * self.gates[i][0], out[..., 1] * self.gates[i][1]

    def terms(self, x, seed):
        """Per-example (elbo, rate, distortion), each [B], at noise `seed`."""
        k, d = self.k, self.latent_dim
        log_2pi = math.log(2 * math.pi)
        loc, scale = self.encode(x)  # [B, D]
        batch = tf.shape(loc)[0]
        # eps [k, B, D], drawn as TFP's MultivariateNormalDiag draws it.
        eps = tf.transpose(tf.random.stateless_normal(
            tf.stack([k, d, batch]), seed=tf.cast(seed, tf.int32)), [0, 2, 1])
        z = loc + scale * eps
        log_q = tf.reduce_sum(-0.5 * tf.square(eps) - tf.math.log(scale)
                              - 0.5 * log_2pi, -1)  # [k, B]
        for i in range(len(self.made_weights)):
            if i:
                z = tf.reverse(z, [-1])
            shift, log_scale = self._made(i, z)
            z = (z - shift) * tf.exp(-log_scale)
            log_q += tf.reduce_sum(log_scale, -1)

        logits = self.decode_logits(tf.reshape(z, [-1, d]))  # [k * B, pixels]
        labels = tf.reshape(x, [1, batch, -1])
        logits = tf.reshape(logits, [k, batch, -1])
        if k > 1:
            labels = tf.broadcast_to(labels, tf.shape(logits))
        log_px_z = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=labels, logits=logits), -1)  # [k, B]
        distortion = -tf.reduce_mean(log_px_z, 0)
        if k == 1 and not self.made_weights:  # The closed-form KL.
            rate = 0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale) - 1.0
                                       - 2.0 * tf.math.log(scale), -1)
            return -(distortion + rate), rate, distortion
        log_pz = tf.reduce_sum(-0.5 * tf.square(z) - 0.5 * log_2pi, -1)
        rate = tf.reduce_mean(log_q - log_pz, 0)
        if k == 1:
            return -(distortion + rate), rate, distortion
        bound = (tf.reduce_logsumexp(log_px_z + log_pz - log_q, 0)
                 - math.log(k))
        return bound, rate, distortion

    def make_train_step(self, optimizer, jit_compile: bool) -> Callable:
        """A bare compiled training step `step_fn(x, step)`.

        It returns the sums over the batch of (loss, elbo, rate, distortion)
        as a float32 [4] tensor, like `train.make_train_step`.
        """
        variables = self.trainable_variables
        batch_size = self.config.batch_size
        # The seed stream of the package's training noise.
        base_seed = tf.constant(
            [self.config.seed, train_step_lib.TRAIN_STREAM],
            tf.int64)
        scaling = isinstance(optimizer,
                             tf_keras.mixed_precision.LossScaleOptimizer)

        @tf.function(jit_compile=jit_compile)
        def step_fn(x, step):
            seed = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(base_seed, step), 0)
            with tf.GradientTape() as tape:
                elbo, rate, distortion = self.terms(x, seed)
                loss_sum = -tf.reduce_sum(elbo)
                loss = loss_sum / batch_size
                if scaling:
                    loss = optimizer.get_scaled_loss(loss)
            grads = tape.gradient(loss, variables)
            if scaling:
                grads = optimizer.get_unscaled_gradients(grads)
            optimizer.apply_gradients(zip(grads, variables))
            return tf.stack([loss_sum, tf.reduce_sum(elbo),
                             tf.reduce_sum(rate), tf.reduce_sum(distortion)])

        return step_fn

    def assign_from(self, model: VAE) -> None:
        """Copies the weights of a package `VAE` of the same settings."""
        ours = [w for pair in self.encoder_convs + self.encoder_dense
                for w in pair]
        ours += [w for pair in self.decoder_dense + self.decoder_convs
                 for w in pair]
        theirs = list(model.encoder.trainable_weights)
        theirs += list(model.decoder.trainable_weights)
        for weights, gate, network, their_gate in zip(
                self.made_weights, self.gates, getattr(model.flow, "networks", []),
                getattr(model.flow, "gates", [])):
            ours += [w for pair in weights for w in pair] + [gate]
            theirs += list(network.trainable_weights) + [their_gate]
        if ([tuple(v.shape) for v in ours]
                != [tuple(v.shape) for v in theirs]):
            raise ValueError("The package model does not have the baseline's "
                             "layers; build both from the same settings.")
        for mine, other in zip(ours, theirs):
            mine.assign(other)


def made_masks(latent_dim: int, hidden_units, params: int) -> list[np.ndarray]:
    """The masks of a MADE with left-to-right input order, equal degrees.

    Input i (degree i + 1) may reach hidden unit j of degree m_j when
    i + 1 <= m_j, hidden units reach the next layer's units of no smaller
    degree, and output d (all its `params` columns) sees only degrees
    below d + 1, so output d depends on inputs 0 .. d-1 only.

    Returns:
        Float masks [fan_in, fan_out] of each layer; the last has `params`
        columns per output (column d * params + p).
    """
    d = latent_dim
    degrees = [np.arange(1, d + 1)]
    for units in hidden_units:
        equal = np.ceil(np.arange(1, units + 1) * (d - 1) / (units + 1))
        degrees.append(np.maximum(min(degrees[-1].min(), d - 1),
                                  equal).astype(int))
    masks = [(a[:, None] <= b[None, :]) for a, b in zip(degrees, degrees[1:])]
    last = degrees[-1][:, None] < degrees[0][None, :]
    masks.append(np.repeat(last, params, axis=1))
    return [m.astype(np.float32) for m in masks]


def _dense_stack(rng, fan_in: int, sizes) -> list[tuple[tf.Variable, tf.Variable]]:
    """Glorot-uniform kernels and zero biases of dense layers."""
    weights = []
    for i, size in enumerate(sizes):
        limit = math.sqrt(6.0 / (fan_in + size))
        weights.append((
            tf.Variable(rng.uniform(-limit, limit, (fan_in, size)).astype(
                np.float32), name=f"kernel_{i}"),
            tf.Variable(tf.zeros([size]), name=f"bias_{i}")))
        fan_in = size
    return weights


def _conv_weights(rng, shape, bias_size: int) -> tuple[tf.Variable, tf.Variable]:
    """A Glorot-uniform convolution kernel and a zero bias."""
    receptive = shape[0] * shape[1]
    limit = math.sqrt(6.0 / (receptive * (shape[2] + shape[3])))
    kernel = tf.Variable(rng.uniform(-limit, limit, shape).astype(np.float32),
                         name="kernel")
    return kernel, tf.Variable(tf.zeros([bias_size]), name="bias")


# --------------------------------------------------------------------------
# Data.

@dataclasses.dataclass
class BenchmarkData:
    """The images the benchmark trains on.

    Attributes:
        dataset: Binary images [N, 28, 28, 1] in a `data.Dataset`.
        path: An .npz file holding them (for the CLI loop).
        description: What they are, for the report.
    """
    dataset: data_lib.Dataset
    path: str
    description: str


def load_benchmark_data(source: str, scratch: str) -> BenchmarkData:
    """binarized_mnist.npz, or scikit-learn's digits upsampled to 28x28.

    Args:
        source: An .npz path, or "auto" (see the --data flag).
        scratch: A directory for the .npz of the fallback data.
    """
    if source == "auto":
        found = [p for p in _DATA_CANDIDATES if p.exists()]
        if found:
            source = str(found[0])
    if source != "auto":
        dataset = data_lib.load_dataset(source, binarize="none")
        if not dataset.is_binary or dataset.kind != "image":
            raise ValueError(f"--data={source} must hold binary images.")
        return BenchmarkData(dataset, source, f"{source} ({dataset.summary()})")

    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits().images[..., None] / 16.0  # [1797, 8, 8, 1]
    images = tf.image.resize(digits, [28, 28]).numpy()
    images = (np.random.default_rng(0).random(images.shape) < images).astype(
        np.float32)
    path = os.path.join(scratch, "digits_28x28.npz")
    np.savez(path, train=images[:1500], valid=images[1500:])
    dataset = data_lib.load_dataset(path, binarize="none")
    return BenchmarkData(dataset, path, "scikit-learn digits upsampled to "
                         "28x28 and binarized (binarized_mnist.npz absent)")


# --------------------------------------------------------------------------
# Timing.

@dataclasses.dataclass
class Timing:
    """Step times of one side of a measurement."""
    batch_size: int
    step_seconds: list = dataclasses.field(default_factory=list)
    block_seconds: list = dataclasses.field(default_factory=list)

    def run_block(self, step: Callable[[], object], steps: int) -> None:
        """Runs and times `steps` calls of `step` (each read to the end)."""
        start = time.perf_counter()
        for _ in range(steps):
            tick = time.perf_counter()
            step()
            self.step_seconds.append(time.perf_counter() - tick)
        self.block_seconds.append(time.perf_counter() - start)

    def summary(self) -> dict:
        """images/s over all blocks, per block, and step-time percentiles."""
        seconds = np.asarray(self.step_seconds)
        per_block = len(seconds) // max(len(self.block_seconds), 1)
        p10, median, p90 = np.percentile(seconds, [10, 50, 90]) * 1e3
        return {
            "images_per_sec": self.batch_size * len(seconds)
                              / sum(self.block_seconds),
            "steps_per_sec": len(seconds) / sum(self.block_seconds),
            "block_images_per_sec": [self.batch_size * per_block / s
                                     for s in self.block_seconds],
            "step_ms": {"p10": p10, "median": median, "p90": p90},
            "steps": len(seconds),
        }


def interleave(sides: dict[str, Callable[[], object]], batch_size: int, *,
               steps: int, blocks: int, warmup: int) -> dict[str, dict]:
    """Times callables in alternating blocks (ABBA...) after warm-up.

    Args:
        sides: name -> a callable running one step and reading its result.
        batch_size: Images per step.
        steps: Steps per block.
        blocks: Blocks per side.
        warmup: Untimed calls per side first (the first one compiles).

    Returns:
        name -> `Timing.summary()`.
    """
    for step in sides.values():
        for _ in range(warmup):
            step()
    timings = {name: Timing(batch_size) for name in sides}
    names = list(sides)
    for b in range(blocks):
        for name in (names if b % 2 == 0 else names[::-1]):
            timings[name].run_block(sides[name], steps)
    return {name: t.summary() for name, t in timings.items()}


# --------------------------------------------------------------------------
# The measurements.

def model_config(name: str, *, batch_size: int, mixed_precision: str,
                 jit_compile: bool | str = "auto",
                 dataset: str = "binarized_mnist") -> TrainConfig:
    """The `TrainConfig` of benchmarked model `name`."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose from {list(MODELS)}.")
    return TrainConfig(**{**MODELS[name]}, batch_size=batch_size,
                       mixed_precision=mixed_precision, jit_compile=jit_compile,
                       dataset=dataset, binarize="none")


def build_package(config: TrainConfig, data_shape):
    """The package model, optimizer and CLI training step of `config`."""
    tf_keras.utils.set_random_seed(config.seed)  # As train_and_evaluate.
    model = train.build_model(config, data_shape)
    optimizer = train.build_optimizer(config)
    train.base_optimizer(optimizer).build(model.trainable_variables)
    kl = evaluation.resolve_kl(config.kl, model)
    return model, optimizer, train.build_train_step(config, model, optimizer,
                                                    kl=kl)


def build_baseline(config: TrainConfig, model: VAE, jit_compile: bool):
    """The hand-written model (started from `model`'s weights) and its step."""
    baseline = HandWrittenVAE(config, model.data_shape)
    baseline.assign_from(model)
    # The same optimizer as the package's (tf_keras Adam for every model of
    # MODELS), with its update compiled as the CLI compiles it.
    optimizer = train.build_optimizer(config)
    base = getattr(optimizer, "inner_optimizer", optimizer)
    base.jit_compile = jit_compile
    base.build(baseline.trainable_variables)
    return baseline, baseline.make_train_step(optimizer, jit_compile)


def measure_training(name: str, x: tf.Tensor, jit_compile: bool, *,
                     mixed_precision: str, steps: int, blocks: int,
                     warmup: int) -> dict:
    """Package vs hand-written training throughput of one model."""
    batch_size = int(x.shape[0])
    config = model_config(name, batch_size=batch_size,
                          mixed_precision=mixed_precision,
                          jit_compile=jit_compile)
    model, _, package_step = build_package(config, x.shape[1:])
    _, baseline_step = build_baseline(config, model, jit_compile)
    beta = tf.constant(1.0)
    counters = {"package": 0, "baseline": 0}

    def run_package():
        step = counters["package"]
        counters["package"] += 1
        return package_step(x, tf.constant(step, tf.int64), beta).numpy()

    def run_baseline():
        step = counters["baseline"]
        counters["baseline"] += 1
        return baseline_step(x, tf.constant(step, tf.int64)).numpy()

    results = interleave({"package": run_package, "baseline": run_baseline},
                         batch_size, steps=steps, blocks=blocks, warmup=warmup)
    auto = train.resolve_jit_compile("auto", model, config.n_samples)
    return {"model": name, "xla": jit_compile, "auto_xla": auto,
            "batch_size": batch_size, "mixed_precision": mixed_precision,
            **results,
            "ratio": (results["package"]["images_per_sec"]
                      / results["baseline"]["images_per_sec"]),
            "median_ratio": (results["baseline"]["step_ms"]["median"]
                             / results["package"]["step_ms"]["median"])}


def measure_xla(name: str, x: tf.Tensor, *, mixed_precision: str,
                steps: int, blocks: int, warmup: int) -> dict:
    """The CLI training step of a model with XLA on against XLA off, in
    alternating blocks, both started from the same weights; and whether
    --jit_compile=auto picks the faster."""
    batch_size = int(x.shape[0])
    steps_of, auto = {}, None
    for jit in (True, False):
        config = model_config(name, batch_size=batch_size,
                              mixed_precision=mixed_precision, jit_compile=jit)
        model, _, package_step = build_package(config, x.shape[1:])
        auto = train.resolve_jit_compile("auto", model, config.n_samples)
        steps_of["xla_on" if jit else "xla_off"] = package_step
    beta = tf.constant(1.0)
    counters = dict.fromkeys(steps_of, 0)

    def runner(side):
        def run_step():
            step = counters[side]
            counters[side] += 1
            return steps_of[side](x, tf.constant(step, tf.int64), beta).numpy()
        return run_step

    results = interleave({side: runner(side) for side in steps_of},
                         batch_size, steps=steps, blocks=blocks, warmup=warmup)
    on, off = (results[s]["images_per_sec"] for s in ("xla_on", "xla_off"))
    return {"model": name, "batch_size": batch_size,
            "mixed_precision": mixed_precision, **results,
            "auto_xla": auto, "xla_speedup": on / off,
            "auto_picks_faster": auto == (on > off)}


def measure_evaluation(name: str, x: tf.Tensor, *, k: int, repeats: int,
                       mixed_precision: str) -> dict:
    """Throughput of `VAE.log_likelihood(x, k)` and how it is compiled."""
    config = model_config(name, batch_size=int(x.shape[0]),
                          mixed_precision=mixed_precision)
    model = train.build_model(config, x.shape[1:])
    start = time.perf_counter()
    model.log_likelihood(x, k=k, seed=0).numpy()  # Traces and compiles.
    first = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(repeats):
        model.log_likelihood(x, k=k, seed=i + 1).numpy()
    seconds = (time.perf_counter() - start) / repeats
    function = model._log_likelihood_fn  # pylint: disable=protected-access
    ops = set()
    for concrete in function._list_all_concrete_functions():  # pylint: disable=protected-access
        ops |= {op.type for op in concrete.graph.get_operations()}
    return {"model": name, "k": k, "batch_size": int(x.shape[0]),
            "images_per_sec": int(x.shape[0]) / seconds,
            "seconds_per_call": seconds, "first_call_seconds": first,
            "traces": function.experimental_get_tracing_count(),
            "while_loop": bool(ops & {"While", "StatelessWhile"})}


def _batches(dataset: tf.data.Dataset) -> Iterator[tf.Tensor]:
    """Batches epoch after epoch, as the CLI loop iterates them."""
    while True:
        yield from dataset


def measure_pipeline(name: str, bench_data: BenchmarkData, *, batch_size: int,
                     mixed_precision: str, steps: int, blocks: int,
                     warmup: int, jit_compile: bool | str = "auto") -> dict:
    """The package step fed by tf.data vs by a constant batch; the CLI loop.

    `jit_compile` is the trainer's setting (True, False or "auto", what the
    CLI picks by default)."""
    dataset = bench_data.dataset
    config = model_config(name, batch_size=batch_size,
                          mixed_precision=mixed_precision,
                          jit_compile=jit_compile, dataset=bench_data.path)
    model, _, package_step = build_package(config, dataset.data_shape)
    jit = train.resolve_jit_compile(jit_compile, model, config.n_samples)
    pipeline = _batches(data_lib.make_train_dataset(
        dataset, batch_size, seed=0, binarize="none"))
    constant = tf.constant(dataset.splits["train"][:batch_size])
    beta = tf.constant(1.0)
    counter = [0]

    def step_on(x):
        counter[0] += 1
        return package_step(x, tf.constant(counter[0], tf.int64), beta).numpy()

    results = interleave(
        {"pipeline": lambda: step_on(next(pipeline)),
         "constant": lambda: step_on(constant)},
        batch_size, steps=steps, blocks=blocks, warmup=warmup)

    # The same in calls of --steps_per_execution steps, as the CLI loop
    # runs them: the pipeline's iterator against one repeating the batch.
    per_call = config.steps_per_execution
    loop_results = None
    if per_call > 1:
        train_loop = train.make_train_loop(config, package_step.step)
        iterators = {
            "pipeline": iter(data_lib.make_train_dataset(
                dataset, batch_size, seed=0, binarize="none").repeat()),
            "constant": iter(tf.data.Dataset.from_tensors(constant).repeat())}

        def loop_on(iterator):
            counter[0] += per_call
            return train_loop(iterator, tf.constant(counter[0], tf.int64),
                              tf.constant(per_call, tf.int32)).numpy()

        loop_results = interleave(
            {name: (lambda it=it: loop_on(it)) for name, it in iterators.items()},
            batch_size * per_call, steps=max(1, steps // per_call),
            blocks=blocks, warmup=max(2, warmup // per_call))

    # The CLI loop on the same data, model and XLA setting.
    with tempfile.TemporaryDirectory() as model_dir:
        # The absl logger's own level, restored as it was (set_verbosity
        # would leave an explicit level where there was none).
        absl_logger = logging.get_absl_logger()
        level = absl_logger.level
        absl_logger.setLevel(logging.WARNING)
        try:
            # Its first step and its first multi-step call compile.
            metrics = train.train_and_evaluate(config.replace(
                max_steps=warmup + steps * blocks + 2 * per_call, eval_k=0,
                eval_every=0,
                checkpoint_every=0, log_every=10 ** 9, plots=False),
                model_dir)
        finally:
            absl_logger.setLevel(level)
    loop = metrics["examples_per_sec"]
    # The compute-bound rate: the constant batch, in the faster of one step
    # and per_call steps per call.
    constant_rate = max(
        [results["constant"]["images_per_sec"]]
        + ([loop_results["constant"]["images_per_sec"]] if loop_results else []))
    report = {"model": name, "xla": jit, "batch_size": batch_size,
              "data": bench_data.description, **results,
              # The share of throughput lost to the pipeline, from all
              # steps and from the median step times (which ignore stalls,
              # such as another process taking the CPU, and the per-epoch
              # start).
              "pipeline_cost": _cost(results),
              "pipeline_cost_median": _cost(results, median=True),
              "steps_per_execution": per_call,
              "per_call": loop_results,
              "per_call_pipeline_cost": loop_results and _cost(loop_results),
              "per_call_pipeline_cost_median": (
                  loop_results and _cost(loop_results, median=True)),
              "cli_loop_images_per_sec": loop,
              "cli_loop_cost": loop and 1.0 - loop / constant_rate}
    return report


def _cost(results: dict, median: bool = False) -> float:
    """1 - pipeline/constant throughput (from all steps or median times)."""
    if median:
        return 1.0 - (results["constant"]["step_ms"]["median"]
                      / results["pipeline"]["step_ms"]["median"])
    return 1.0 - (results["pipeline"]["images_per_sec"]
                  / results["constant"]["images_per_sec"])


# --------------------------------------------------------------------------
# Report.

def machine() -> dict:
    """CPU model, cores and library versions."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
        with open("/proc/cpuinfo") as f:
            cpu_flags = next((line for line in f if line.startswith("flags")), "")
        amx = "amx_bf16" in cpu_flags.split()
    except OSError:
        amx = False
    return {"cpu": cpu, "cores": os.cpu_count(), "amx_bf16": amx,
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__}


_ON_OFF = {True: "on", False: "off"}


def _side(result: dict) -> str:
    ms = result["step_ms"]
    return (f"{result['images_per_sec']:>9,.0f}  {ms['median']:6.2f} "
            f"[{ms['p10']:.2f}, {ms['p90']:.2f}]")


_TRAINING_HEADER = (f"{'model':6} {'XLA':4} {'tfpvae (CLI step)':>31} "
                    f"{'hand-written':>31} {'ratio':>14}  auto")


def training_row(r: dict) -> str:
    """One line of the training table."""
    return (f"{r['model']:6} {_ON_OFF[r['xla']]:4} {_side(r['package']):>31} "
            f"{_side(r['baseline']):>31} {r['ratio']:6.3f} "
            f"({r['median_ratio']:.3f})  {_ON_OFF[r['auto_xla']]}")


def xla_row(r: dict) -> str:
    """One line of the XLA on/off table."""
    auto = _ON_OFF[r["auto_xla"]] + ("" if r["auto_picks_faster"]
                                     else " (the slower)")
    return (f"{r['model']:6} {_side(r['xla_on'])} {_side(r['xla_off'])} "
            f"{r['xla_speedup']:>7.3f}  {auto}")


def format_report(report: dict) -> str:
    """The results as text tables."""
    settings = report["settings"]
    lines = [
        f"tfpvae benchmark, {report['date']}: {report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores, TF {report['machine']['tensorflow']}",
        f"load average (1, 5, 15 min): before "
        f"{', '.join(f'{v:.2f}' for v in report['load_before'])}; after "
        f"{', '.join(f'{v:.2f}' for v in report['load_after'])}",
        f"data: {settings['data']}",
        "",
        f"Training, batch {settings['batch_size']}, {settings['mixed_precision']}"
        f" ({settings['blocks']} alternating blocks of {settings['steps']} "
        f"steps per side): images/s, step ms median [p10, p90]",
        "ratio: package / hand-written images/s (of the median step "
        "times); auto: what --jit_compile=auto picks",
        _TRAINING_HEADER,
    ]
    lines += [training_row(r) for r in report["training"]]
    if report.get("xla"):
        lines += ["", "Training without a hand-written baseline: XLA on against "
                      "XLA off (alternating blocks); images/s, step ms median "
                      "[p10, p90]",
                  f"{'model':6} {'XLA on':>31} {'XLA off':>31} {'on/off':>7}  auto"]
        lines += [xla_row(r) for r in report["xla"]]
    if report["evaluation"]:
        lines += ["", "Evaluation: VAE.log_likelihood",
                  f"{'model':6} {'k':>6} {'batch':>6} {'images/s':>9} "
                  f"{'s/call':>7}  compiled as"]
        for r in report["evaluation"]:
            how = ("one tf.while_loop" if r["while_loop"]
                   else "NO while_loop") + f", {r['traces']} trace(s)"
            lines.append(f"{r['model']:6} {r['k']:>6} {r['batch_size']:>6} "
                         f"{r['images_per_sec']:>9,.0f} "
                         f"{r['seconds_per_call']:>7.2f}  {how}")
    if report["input_pipeline"]:
        r = report["input_pipeline"]
        lines += ["", f"Input pipeline ({r['model']}, XLA {_ON_OFF[r['xla']]}, "
                      f"batch {r['batch_size']}): images/s, step ms median "
                      f"[p10, p90]",
                  f"  constant batch   {_side(r['constant'])}",
                  f"  tf.data pipeline {_side(r['pipeline'])}  cost "
                  f"{100 * r['pipeline_cost']:+.1f}% (median "
                  f"{100 * r['pipeline_cost_median']:+.1f}%)"]
        if r.get("per_call"):
            c = r["per_call"]
            lines += [
                f"  {r['steps_per_execution']} steps per call (--steps_per_execution, "
                f"the CLI default): images/s, call ms median [p10, p90]",
                f"  constant batch   {_side(c['constant'])}",
                f"  tf.data pipeline {_side(c['pipeline'])}  cost "
                f"{100 * r['per_call_pipeline_cost']:+.1f}% (median "
                f"{100 * r['per_call_pipeline_cost_median']:+.1f}%)"]
        if r["cli_loop_images_per_sec"]:
            lines += [f"  CLI loop         {r['cli_loop_images_per_sec']:>9,.0f}"
                      f"  (train_and_evaluate's examples_per_sec) cost "
                      f"{100 * r['cli_loop_cost']:+.1f}% against the faster "
                      f"constant batch"]
    return "\n".join(lines)


def run(argv_command: str) -> dict:
    """Runs the measurements the flags select; returns the report."""
    report = {"command": argv_command, "date": time.strftime("%Y-%m-%d"),
              "machine": machine(), "load_before": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as scratch:
        bench_data = load_benchmark_data(FLAGS.data, scratch)
        report["settings"] = {
            "models": FLAGS.models, "batch_size": FLAGS.batch_size,
            "steps": FLAGS.steps, "blocks": FLAGS.blocks,
            "warmup": FLAGS.warmup, "xla": FLAGS.xla,
            "mixed_precision": FLAGS.mixed_precision, "eval_k": FLAGS.eval_k,
            "eval_batch_size": FLAGS.eval_batch_size,
            "data": bench_data.description}
        # The pipeline first, as in a fresh `python -m tfpvae.main`: a new
        # epoch's iterator instantiates the pipeline's functions, which takes
        # seconds once the process holds the functions of many models.
        report["input_pipeline"] = None
        if FLAGS.pipeline:
            logging.info("Input pipeline and CLI loop (%s) ...", FLAGS.models[0])
            report["input_pipeline"] = measure_pipeline(
                FLAGS.models[0], bench_data, batch_size=FLAGS.batch_size,
                mixed_precision=FLAGS.mixed_precision, steps=FLAGS.steps,
                blocks=FLAGS.blocks, warmup=FLAGS.warmup,
                # The one setting asked for; with both, what the CLI picks.
                jit_compile=_PIPELINE_XLA[FLAGS.xla])
        train_images = bench_data.dataset.splits["train"]
        x = tf.constant(train_images[:FLAGS.batch_size])
        report["training"], report["xla"] = [], []
        for name in FLAGS.models:
            if name not in BASELINE_MODELS:
                logging.info("Training %s, XLA on against off ...", name)
                report["xla"].append(measure_xla(
                    name, x, mixed_precision=FLAGS.mixed_precision,
                    steps=FLAGS.steps, blocks=FLAGS.blocks,
                    warmup=FLAGS.warmup))
                logging.info("%s", xla_row(report["xla"][-1]))
                continue
            for jit in _XLA_SETTINGS[FLAGS.xla]:
                logging.info("Training %s, XLA %s ...", name, jit)
                report["training"].append(measure_training(
                    name, x, jit, mixed_precision=FLAGS.mixed_precision,
                    steps=FLAGS.steps, blocks=FLAGS.blocks,
                    warmup=FLAGS.warmup))
                logging.info("%s", training_row(report["training"][-1]))
        report["evaluation"] = []
        if FLAGS.eval_k:
            x_eval = tf.constant(
                bench_data.dataset.splits["valid"][:FLAGS.eval_batch_size])
            for name in FLAGS.models:
                logging.info("log_likelihood of %s, k=%d ...", name,
                             FLAGS.eval_k)
                report["evaluation"].append(measure_evaluation(
                    name, x_eval, k=FLAGS.eval_k, repeats=FLAGS.eval_repeats,
                    mixed_precision=FLAGS.mixed_precision))
                logging.info("%.1f images/s",
                             report["evaluation"][-1]["images_per_sec"])
    report["load_after"] = list(os.getloadavg())
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    tf.get_logger().setLevel("ERROR")
    # The XLA options of the CLI's training step, before anything compiles:
    # the baseline runs in the same process with the same options.
    train.use_fast_xla_flags()
    command = " ".join(["python tools/benchmark.py", *sys.argv[1:]])
    report = run(command)
    print(format_report(report))
    if FLAGS.output:
        run_dir.write_json_atomic(FLAGS.output, report)
        print(f"\nWrote {FLAGS.output}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
