"""Training and evaluation of a VAE: the loop behind `python -m tfpvae.main`.

`train_and_evaluate(config, model_dir)` loads the data (`tfpvae.data`),
builds the `VAE` and a tf_keras optimizer, and runs a plain loop over one
compiled training step, evaluating on the held-out split at the end of every
epoch (or every `eval_every` steps) and at the end. What it leaves:

    <model_dir>/model_config.json   VAE.get_config(): the model of the directory
    <model_dir>/checkpoints/        model, optimizer and global step (the last
                                    `keep_checkpoints`)
    <model_dir>/flags.txt           the run's settings, usable as --flagfile
    <model_dir>/flags.json          the same as JSON, plus model_dir
    <model_dir>/tensorboard/train/  scalars loss, elbo, rate, distortion, beta,
                                    learning_rate, examples_per_sec
    <model_dir>/tensorboard/eval/   scalars elbo, rate, distortion, iwae; image
                                    grids reconstructions, prior_samples
    <model_dir>/history.jsonl       one JSON object per evaluation (below)
    <model_dir>/metrics.json        the final evaluation, the step reached, the
                                    throughput, the configuration
    <model_dir>/saved_model/        with `export`: see `tfpvae.export`

Each line of history.jsonl holds: step, epoch (fractional), elapsed (training
seconds over all sessions), wall_time, train_loss, train_elbo, train_rate,
train_distortion (means over the steps since the previous evaluation, None
right after a resume), eval_elbo, eval_rate, eval_distortion, eval_iwae
(None when eval_k = 0), eval_k, beta and learning_rate (those of the latest
step), examples_per_sec (of the latest 50 steps).

The training step. For a global batch of B examples the loss is

    loss = -(1/B) sum_i objective_i,

where objective is the beta-weighted ELBO (n_samples = 1) or the IWAE bound
with k = n_samples (`VAE.loss`). Under a tf.distribute strategy every replica
sums the objective of its share of the batch and divides by the global B, so
the gradients summed across replicas are those of the single-device loss.
The KL weight warms up linearly: beta_t = beta * min(1, t / kl_warmup_steps).

Devices. On one device the whole step, optimizer update included, is one
`tf.function`, XLA-compiled with `jit_compile` ("auto": where XLA was
measured faster, see `resolve_jit_compile`; rebuilt without XLA, after one
warning, if XLA cannot compile it). Under the "mirrored" and
"multi_worker" strategies the model and optimizer live under
`strategy.scope()`, each global batch is split across the replicas
(`experimental_distribute_dataset`), the replicas' term sums are added up,
and only the chief worker writes `model_dir` (the others save their part of
each checkpoint to a scratch directory). With mixed_float16 the optimizer is
a `LossScaleOptimizer`; the distributions always compute in float32.

Determinism. The initial weights come from `seed`; the noise of step t is
drawn with the stateless seed fold_in(fold_in((seed, 1), t), replica), and
the data order of epoch e is seeded by (seed, e) (`data.make_train_dataset`),
so on CPU two runs with the same settings give the same losses.

Resuming. Running again with the same `model_dir` restores the latest
checkpoint and continues from its global step with the data order the
uninterrupted run would have had (the epoch and the batch within it follow
from the step), so a run killed at any moment loses only the steps since its
last checkpoint. The training flags may change between sessions (each change
is logged): the learning rate follows `learning_rate_schedule` of the new
flags, so a run can be resumed with a longer --epochs and an anneal
(--lr_schedule=cosine --lr_decay_epochs). SIGINT and SIGTERM save a
checkpoint after the current step and raise `Interrupted`. A directory holding
a different model (any difference in `model_config.json`) is refused with
`ModelDirError` before anything in it is touched.

Safety. A non-finite loss stops the run with `TrainingDiverged` without
saving; the last checkpoint (saved only when every weight is finite) stays.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging
from tensorflow.core.framework import summary_pb2

from tfpvae import data as data_lib
from tfpvae import export as export_lib
from tfpvae import objectives
from tfpvae import plots as plots_lib
from tfpvae import saving
from tfpvae.config import TrainConfig
from tfpvae.model import VAE

HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
FLAGS_TXT_FILE = "flags.txt"
FLAGS_JSON_FILE = "flags.json"
TENSORBOARD_SUBDIR = "tensorboard"
SAVED_MODEL_SUBDIR = "saved_model"

#: The training terms the step returns (sums over its batch), in order.
TRAIN_TERMS = ("loss", "elbo", "rate", "distortion")

#: Seed streams: fold (seed, stream) for training noise and evaluation.
_TRAIN_STREAM, _EVAL_STREAM, _IMAGE_STREAM = 1, 2, 3

#: Errors TensorFlow raises when XLA cannot compile a function.
_XLA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
               tf.errors.InternalError)

#: XLA options of the compiled training step (`use_fast_xla_flags`). With
#: region-based copy insertion XLA updates the weights in place instead of
#: copying them every step: ~8% more images/s for the MLP on CPU, with
#: bitwise the same results (docs/performance.md). GPUs ignore it.
FAST_XLA_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)

#: How a model-config key is set on the command line, where it differs.
_SETTING_FLAG = {"dtype_policy": "mixed_precision", "data_shape": "dataset"}

_OPTIMIZERS = {
    "adam": tf_keras.optimizers.Adam,
    "rmsprop": tf_keras.optimizers.RMSprop,
    "sgd": tf_keras.optimizers.SGD,
}


class ModelDirError(ValueError):
    """The model directory holds something other than this run's model."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped training after a checkpoint was saved.

    Attributes:
        signum: The signal received.
        step: The global step saved.
        exit_code: The conventional exit code, 128 + signum.
    """

    def __init__(self, signum: int, step: int, model_dir: str):
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at step {step}; "
            f"checkpoint saved in {model_dir}. Run the same command again to "
            f"resume.")


# --------------------------------------------------------------------------
# Building blocks.

def configure_cpu_devices(n: int) -> None:
    """Splits the CPU into `n` logical devices (before TensorFlow starts).

    Raises:
        ValueError: If TensorFlow's devices are already initialised.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:
        raise ValueError(f"cannot split the CPU into {n} devices once "
                         f"TensorFlow has started ({e}).") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` ("default", "mirrored", "multi_worker").

    "mirrored" replicates over all local GPUs, or over all logical CPUs when
    there is no GPU (see `configure_cpu_devices`); "multi_worker" reads the
    cluster from the TF_CONFIG environment variable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the model directory (the chief worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type in (None, "chief")
            or (task_type == "worker" and task_id == 0 and not has_chief))


def load_data(config: TrainConfig) -> data_lib.Dataset:
    """Loads `config.dataset`, resolving binarize="auto" (see tfpvae.config).

    Raises:
        data.DatasetError: If the data cannot be loaded.
    """
    kwargs = dict(digits=config.digits or None,
                  validation_fraction=config.validation_fraction,
                  label_column=config.label_column or None, seed=config.seed,
                  data_dir=config.data_dir or None,
                  standardize=config.standardize)
    binarize = "none" if config.binarize == "auto" else config.binarize
    dataset = data_lib.load_dataset(config.dataset, binarize=binarize, **kwargs)
    if (config.binarize == "auto" and config.likelihood == "bernoulli"
            and dataset.kind == "image" and not dataset.is_binary):
        logging.info("--binarize=auto: %s is not binary and the likelihood is "
                     "bernoulli; binarizing dynamically (a fresh sample of "
                     "each batch every epoch).", dataset.name)
        dataset = data_lib.load_dataset(config.dataset, binarize="dynamic",
                                        **kwargs)
    return dataset


def check_data(model: VAE, dataset: data_lib.Dataset) -> None:
    """Raises ValueError when the data lies outside the likelihood's support.

    Under dynamic binarization the train split holds intensities that are
    binarized batch by batch, so only the other splits are checked.
    """
    for split, x in dataset.splits.items():
        if split == "train" and dataset.binarize == "dynamic":
            continue
        try:
            model.likelihood.check_data(x)
        except ValueError as e:
            raise ValueError(f"{dataset.name} ({split} split): {e}") from None


def build_model(config: TrainConfig, data_shape) -> VAE:
    """The `VAE` the configuration describes, for examples of `data_shape`."""
    scale = config.gaussian_scale
    if scale not in ("learned", "decoder"):
        scale = float(scale)
    return VAE(
        latent_dim=config.latent_dim, data_shape=data_shape,
        likelihood=config.likelihood, architecture=config.architecture,
        hidden_units=config.hidden_units, activation=config.activation,
        prior=config.prior, mixture_components=config.mixture_components,
        posterior_flow=(None if config.posterior_flow == "none"
                        else config.posterior_flow),
        flow_layers=config.flow_layers,
        flow_hidden_units=config.flow_hidden_units,
        flow_context_units=config.flow_context_units,
        conv_filters=config.conv_filters, gaussian_scale=scale,
        epsilon_std=config.epsilon_std,
        dtype_policy=(None if config.mixed_precision == "none"
                      else config.mixed_precision),
        seed=config.seed)


def build_optimizer(config: TrainConfig):
    """The tf_keras optimizer of `config`, at rate `config.learning_rate`.

    Its learning rate is a plain variable: the training step sets it from
    `learning_rate_schedule` before every update, so the rate always follows
    the flags, also when a run is resumed with others (the value a
    checkpoint holds is overwritten, and checkpoints of every schedule have
    the same layout). With mixed_float16 it is wrapped in a
    `LossScaleOptimizer` (dynamic loss scaling). Whether the optimizer's own
    update is XLA-compiled follows the training step's XLA setting
    (`build_train_step` sets it).
    """
    optimizer = _OPTIMIZERS[config.optimizer](
        learning_rate=config.learning_rate,
        jit_compile=config.jit_compile is True)
    if config.mixed_precision == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def learning_rate_schedule(config: TrainConfig, total_steps: int,
                           steps_per_epoch: int
                           ) -> Callable[[tf.Tensor], tf.Tensor]:
    """The learning rate as a function of the global step.

    "cosine" decays `learning_rate` to 0 with tf_keras' `CosineDecay` over
    the last `lr_decay_epochs` epochs of the run (0: over all of it); before
    them the rate is constant. The rate of step t is
    lr * (1 + cos(pi * min(max(t - start, 0), D) / D)) / 2 with
    D = lr_decay_epochs * steps_per_epoch (or total_steps) and
    start = total_steps - D.

    Args:
        config: The run's settings.
        total_steps: The steps of the whole run.
        steps_per_epoch: Steps per epoch.

    Returns:
        `rate(step)` (int64 step, float32 rate).
    """
    if config.lr_schedule == "constant":
        return lambda step: tf.constant(config.learning_rate, tf.float32)
    decay_steps = (config.lr_decay_epochs * steps_per_epoch
                   if config.lr_decay_epochs else total_steps)
    decay_steps = max(min(decay_steps, total_steps), 1)
    start = total_steps - decay_steps
    cosine = tf_keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=decay_steps)

    def rate(step):
        return tf.cast(cosine(tf.maximum(tf.cast(step, tf.int64) - start, 0)),
                       tf.float32)

    return rate


def _base_optimizer(optimizer):
    """The optimizer itself, unwrapped from a LossScaleOptimizer."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def resolve_kl(config: TrainConfig, model: VAE) -> str:
    """The KL estimator to use: `config.kl`, with "auto" resolved."""
    if config.kl == "auto":
        return "analytic" if model.has_analytic_kl else "mc"
    return config.kl


def kl_weight(config: TrainConfig, step: int) -> float:
    """beta_t: ramps linearly from 0 to beta over kl_warmup_steps."""
    if config.kl_warmup_steps <= 0:
        return float(config.beta)
    return float(config.beta) * min(1.0, step / config.kl_warmup_steps)


def use_fast_xla_flags() -> None:
    """Adds `FAST_XLA_FLAGS` to the XLA_FLAGS environment variable.

    XLA reads XLA_FLAGS once, at the first XLA compilation of the process;
    later calls change nothing. A flag the user already set there wins.
    """
    current = os.environ.get("XLA_FLAGS", "")
    names = {flag.split("=")[0] for flag in current.split()}
    extra = [flag for flag in FAST_XLA_FLAGS if flag.split("=")[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()


def resolve_jit_compile(jit_compile: bool | str, model: VAE,
                        n_samples: int) -> bool:
    """Whether to XLA-compile the training step: `jit_compile`, with "auto"
    resolved.

    "auto" turns XLA on where `python -m tfpvae.benchmark` measured it
    faster (docs/performance.md): MLP encoders and decoders trained on the
    ELBO, with or without a flow posterior, in float32 or float16. It stays
    off for convolutions (TensorFlow's oneDNN convolutions beat XLA's on
    CPU), for the IWAE bound (n_samples > 1) and for mixed_bfloat16 (XLA's
    CPU matmuls do not use the AMX bfloat16 units that oneDNN uses).
    """
    if jit_compile != "auto":
        return bool(jit_compile)
    config = model.get_config()
    return (config["architecture"] == "mlp" and n_samples == 1
            and config["dtype_policy"] != "mixed_bfloat16")


def make_train_step(model: VAE, optimizer,
                    strategy: tf.distribute.Strategy | None, *, kl: str,
                    n_samples: int, global_batch_size: int, seed: int,
                    jit_compile: bool | str,
                    learning_rate: Callable[[tf.Tensor], tf.Tensor] | None
                    = None) -> Callable:
    """Builds the compiled training step.

    On one device (strategy None) the whole step, optimizer update included,
    is one `tf.function`, XLA-compiled with `jit_compile`. Under a
    tf.distribute strategy the optimizer's cross-replica update cannot run
    inside XLA, so `jit_compile` compiles the loss and gradients only.
    With XLA it first adds `FAST_XLA_FLAGS` to XLA_FLAGS
    (`use_fast_xla_flags`); `build_train_step` adds the fallback for steps
    XLA cannot compile.

    Args:
        model: The VAE (built under `strategy.scope()`).
        optimizer: Its tf_keras optimizer, already built for the model's
            trainable variables.
        strategy: The tf.distribute strategy, or None for one device.
        kl: "analytic" or "mc".
        n_samples: k of the training bound (1: ELBO, > 1: IWAE).
        global_batch_size: Examples per step over all replicas.
        seed: The run's seed.
        jit_compile: Whether to compile with XLA: True, False or "auto"
            (`resolve_jit_compile`).
        learning_rate: `learning_rate_schedule`'s rate(step), assigned to
            the optimizer's learning rate before each update; None leaves
            the optimizer's rate alone.

    Returns:
        `step_fn(x, step, beta)`: applies one update for the (distributed)
        batch x at global step `step` (int64) with KL weight `beta`
        (float32), and returns the sums over the global batch of
        `TRAIN_TERMS` as a float32 [4] tensor.
    """
    jit_compile = resolve_jit_compile(jit_compile, model, n_samples)
    if jit_compile:
        use_fast_xla_flags()
    variables = model.trainable_variables
    scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    base_seed = tf.constant([seed, _TRAIN_STREAM], tf.int64)
    rate_variable = _base_optimizer(optimizer).learning_rate

    def set_learning_rate(step):
        if learning_rate is not None:
            rate_variable.assign(learning_rate(step))

    def loss_and_gradients(x, step_seed, beta):
        with tf.GradientTape() as tape:
            _, terms = model.loss(x, kl=kl, k=n_samples, beta=beta,
                                  seed=step_seed)
            loss_sum = -tf.reduce_sum(terms.objective)
            loss = loss_sum / global_batch_size
            if scaling:
                loss = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(loss, variables)
        if scaling:
            grads = optimizer.get_unscaled_gradients(grads)
        sums = tf.stack([loss_sum, tf.reduce_sum(terms.elbo),
                         tf.reduce_sum(terms.rate),
                         tf.reduce_sum(terms.distortion)])
        return grads, sums

    if strategy is not None and jit_compile:
        loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(x, step, beta):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, step), replica)
        grads, sums = loss_and_gradients(x, step_seed, beta)
        optimizer.apply_gradients(zip(grads, variables))
        return sums

    if strategy is None:
        def one_device_step(x, step, beta):
            set_learning_rate(step)
            return replica_step(x, step, beta)
        return tf.function(one_device_step, jit_compile=jit_compile)

    @tf.function
    def train_step(x, step, beta):
        set_learning_rate(step)  # In cross-replica context.
        sums = strategy.run(replica_step, args=(x, step, beta))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    return train_step


def build_train_step(config: TrainConfig, model: VAE, optimizer, *, kl: str,
                     strategy: tf.distribute.Strategy | None = None,
                     learning_rate: Callable[[tf.Tensor], tf.Tensor] | None
                     = None) -> Callable:
    """The training step of `train_and_evaluate` (and of the benchmark).

    `make_train_step` with the configuration's settings and XLA resolved
    (`resolve_jit_compile`); the optimizer's own update is compiled alike.
    If XLA cannot compile the step, its first call logs one warning and
    the step is rebuilt without XLA.

    Args:
        config: The run's settings.
        model: The VAE (built under `strategy.scope()`).
        optimizer: Its optimizer (`build_optimizer`), built for the model's
            trainable variables.
        kl: "analytic" or "mc" (`resolve_kl`).
        strategy: The tf.distribute strategy, or None for one device.
        learning_rate: `learning_rate_schedule`'s rate(step), or None for
            the optimizer's constant rate.

    Returns:
        `step_fn(x, step, beta)` as `make_train_step` returns it.
    """
    def build(jit_compile):
        _base_optimizer(optimizer).jit_compile = jit_compile
        return make_train_step(
            model, optimizer, strategy, kl=kl, n_samples=config.n_samples,
            global_batch_size=config.batch_size, seed=config.seed,
            jit_compile=jit_compile, learning_rate=learning_rate)

    return _XlaFallback(build, resolve_jit_compile(config.jit_compile, model,
                                                   config.n_samples))


class _XlaFallback:
    """Calls a step built with XLA; if XLA fails on the first call, rebuilds
    it without XLA (one warning) and carries on."""

    def __init__(self, build: Callable[[bool], Callable], jit_compile: bool):
        self._build = build
        self._step = build(jit_compile)
        self._untried = jit_compile

    @property
    def step(self) -> Callable:
        """The step in use: after the first call, the one that works."""
        return self._step

    def __call__(self, *args):
        if not self._untried:
            return self._step(*args)
        try:
            result = self._step(*args)
        except _XLA_ERRORS as e:
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            logging.warning("XLA could not compile the training step (%s); "
                            "continuing without --jit_compile.", first_line[:200])
            self._step = self._build(False)
            result = self._step(*args)
        self._untried = False
        return result


def kl_weight_tensor(config: TrainConfig, step: tf.Tensor) -> tf.Tensor:
    """`kl_weight` in TensorFlow (float64 math, as Python's), as float32."""
    if config.kl_warmup_steps <= 0:
        return tf.constant(float(config.beta), tf.float32)
    ramp = tf.minimum(tf.constant(1.0, tf.float64),
                      tf.cast(step, tf.float64) / config.kl_warmup_steps)
    return tf.cast(float(config.beta) * ramp, tf.float32)


def make_train_loop(config: TrainConfig, step_fn: Callable) -> Callable:
    """Runs several training steps in one call (Keras' steps_per_execution).

    Args:
        config: The run's settings (for the KL warm-up).
        step_fn: `step_fn(x, step, beta)` as `make_train_step` returns it
            (XLA-compiled or not, distributed or not).

    Returns:
        `loop(iterator, first_step, num_steps)`: takes `num_steps` batches
        from `iterator` (a tf.data or distributed iterator) and applies
        `step_fn` to each, at global steps `first_step`, `first_step + 1`,
        ... with the KL weight of `kl_weight`: the updates of as many
        calls of `step_fn`. Returns the per-step sums, float32
        [num_steps, 4]. One trace serves every `num_steps`.
    """
    @tf.function
    def loop(iterator, first_step, num_steps):
        sums = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            step = first_step + tf.cast(i, tf.int64)
            sums = sums.write(i, step_fn(next(iterator), step,
                                         kl_weight_tensor(config, step)))
        return sums.stack()

    return loop


def _next_boundary(step: int, every: int) -> int:
    """Steps from `step` to the next multiple of `every` (0: none)."""
    return every - step % every if every else 10 ** 18


class Evaluator:
    """ELBO terms and the IWAE bound on a dataset split, averaged per example.

    The ELBO is the true bound (posterior noise std 1, beta = 1) with the
    run's KL estimator; the IWAE bound uses `k` importance samples
    (`VAE.log_likelihood`, chunked in memory). Every batch uses a fixed
    stateless seed, so evaluating the same weights twice gives the same
    numbers.

    Args:
        model: The VAE.
        kl: "analytic" or "mc".
        k: Importance samples of the IWAE bound; 0 skips it.
        batch_size: Examples per evaluation batch.
        seed: The run's seed.
    """

    def __init__(self, model: VAE, *, kl: str, k: int, batch_size: int,
                 seed: int):
        self.model, self.kl, self.k, self.batch_size = model, kl, k, batch_size
        self._seed = tf.constant([seed, _EVAL_STREAM], tf.int64)
        self._elbo_sums = tf.function(self._elbo_sums_fn)

    def _elbo_sums_fn(self, x, seed):
        terms = objectives.evidence_lower_bound(
            x, self.model.encode(x), self.model.prior, self.model.decode,
            kl=self.kl, seed=seed)
        return tf.stack([tf.reduce_sum(terms.elbo), tf.reduce_sum(terms.rate),
                         tf.reduce_sum(terms.distortion)])

    def __call__(self, dataset: data_lib.Dataset,
                 split: str | None = None) -> dict:
        """Returns {"elbo", "rate", "distortion", "iwae"} (iwae None if k=0)."""
        sums, iwae_sum, count = np.zeros(3), 0.0, 0
        for i, x in enumerate(data_lib.make_eval_dataset(
                dataset, self.batch_size, split)):
            seed = tf.random.experimental.stateless_fold_in(self._seed, i)
            sums += self._elbo_sums(x, seed).numpy()
            if self.k:
                iwae = self.model.log_likelihood(x, k=self.k, seed=seed)
                iwae_sum += float(tf.reduce_sum(iwae))
            count += int(x.shape[0])
        means = sums / count
        return {"elbo": float(means[0]), "rate": float(means[1]),
                "distortion": float(means[2]),
                "iwae": iwae_sum / count if self.k else None}


# --------------------------------------------------------------------------
# The model directory.

def check_model_dir(model_dir: str, model_config: dict) -> bool:
    """Refuses a directory that holds another model or foreign files.

    Args:
        model_dir: The run directory (need not exist).
        model_config: `VAE.get_config()` of this run's model.

    Returns:
        Whether the directory already holds this model (a resumable run).

    Raises:
        ModelDirError: one line naming the conflicting settings, or saying
            that the directory is not a tfpvae model directory.
    """
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ModelDirError(f"--model_dir={model_dir} is a file, not a "
                            f"directory.")
    if os.path.exists(os.path.join(model_dir, saving.MODEL_CONFIG_FILE)):
        saved = saving.read_model_config(model_dir)
        new = json.loads(json.dumps(model_config, default=str))
        conflicts = [
            f"{_SETTING_FLAG.get(key, key)}: {_show(saved.get(key))} there, "
            f"{_show(new.get(key))} now"
            for key in sorted(set(saved) | set(new))
            if saved.get(key) != new.get(key)]
        if conflicts:
            raise ModelDirError(
                f"--model_dir={model_dir} holds a different model "
                f"({'; '.join(conflicts)}); pass another --model_dir, or the "
                f"same model flags to resume it.")
        return True
    if os.path.isdir(model_dir) and any(
            not name.startswith(".") for name in os.listdir(model_dir)):
        raise ModelDirError(
            f"--model_dir={model_dir} is not empty and is not a tfpvae model "
            f"directory (no {saving.MODEL_CONFIG_FILE}); choose a new or empty "
            f"directory.")
    return False


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return str(value)


def _write_text_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=".tmp_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_flags(model_dir: str, config: TrainConfig) -> None:
    """Writes flags.txt (a --flagfile) and flags.json for the run.

    When an earlier session of the run used other settings, logs them.
    """
    record = dict(config.to_dict(), model_dir=model_dir)
    json_path = os.path.join(model_dir, FLAGS_JSON_FILE)
    if os.path.exists(json_path):
        with open(json_path) as f:
            previous = json.load(f)
        changed = [f"--{k}: {_show(previous.get(k))} -> {_show(v)}"
                   for k, v in record.items() if previous.get(k) != v]
        if changed:
            logging.info("Settings changed since the last session: %s",
                         "; ".join(changed))
    saving.write_json_atomic(json_path, record)
    lines = [f"# Settings of the tfpvae run in {model_dir}",
             f"# ({time.strftime('%Y-%m-%d %H:%M:%S')}). Repeat or resume it "
             f"with:",
             f"#   python -m tfpvae.main --flagfile="
             f"{os.path.join(model_dir, FLAGS_TXT_FILE)}",
             *config.to_flags(), f"--model_dir={model_dir}"]
    _write_text_atomic(os.path.join(model_dir, FLAGS_TXT_FILE),
                       "\n".join(lines) + "\n")


class Selection:
    """Selection by validation: tracks the best held-out bound and early
    stopping.

    Args:
        metric: "iwae" or "elbo": the evaluation result to maximise.
        patience: Stop after this many evaluations without improvement
            (0 = never stop early).
        records: history.jsonl records of earlier sessions of this run.
        step: The step training resumes from (later records are ignored).
    """

    def __init__(self, metric: str, patience: int, records: list[dict],
                 step: int):
        self.metric, self.patience = metric, patience
        self.best_value, self.best_step, self.since_best = -np.inf, None, 0
        for record in records:
            if record.get("step", 0) <= step:
                self.update(record["step"],
                            {metric: record.get(f"eval_{metric}")})

    @property
    def stop(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def update(self, step: int, results: dict) -> bool:
        """Records an evaluation; returns whether it is the best so far."""
        value = results.get(self.metric)
        if value is not None and value > self.best_value:
            self.best_value, self.best_step, self.since_best = value, step, 0
            return True
        self.since_best += 1
        return False


class History:
    """history.jsonl: one JSON object per evaluation, appended line by line."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> list[dict]:
        """The records, skipping a torn last line of a killed run."""
        if not os.path.exists(self.path):
            return []
        records = []
        with open(self.path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def truncate(self, step: int) -> list[dict]:
        """Drops the records after `step` (a killed run may have evaluated
        after its last checkpoint) and any torn line; returns the rest."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            lines = f.readlines()
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        if len(kept) != len(lines):
            _write_text_atomic(self.path,
                               "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


# TensorBoard summaries, written with TensorFlow's own summary ops in the
# format of TensorBoard's scalar and image plugins (tf.summary.scalar and
# tf.summary.image would need the tensorboard package just to write them).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
_IMAGE_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"))


def summary_scalar(name: str, value: float, step: int) -> None:
    """Writes a TensorBoard scalar to the default summary writer."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                     metadata=_SCALAR_METADATA)


def summary_image(name: str, image: np.ndarray, step: int) -> None:
    """Writes one TensorBoard image [H, W, C] with values in [0, 1]."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    tensor = tf.stack([tf.as_string(width), tf.as_string(height),
                       tf.image.encode_png(pixels)])
    tf.summary.write(name, tensor, step=step, metadata=_IMAGE_METADATA)


def _write_images(model: VAE, dataset: data_lib.Dataset, seed: int,
                  step: int) -> None:
    """Image summaries: held-out examples over their reconstructions, and
    decoder means of prior samples (image data with 1, 3 or 4 channels)."""
    if dataset.kind != "image" or dataset.data_shape[-1] not in (1, 3, 4):
        return
    x = dataset.splits[dataset.eval_split][:32]
    reconstructions = model.reconstruct(x, seed=[seed, _IMAGE_STREAM]).numpy()
    summary_image("reconstructions", np.concatenate(
        [plots_lib.image_grid(x), plots_lib.image_grid(reconstructions)],
        axis=0), step)
    samples = model.sample(64, seed=[seed, _IMAGE_STREAM], mean=True).numpy()
    summary_image("prior_samples", plots_lib.image_grid(samples), step)


class RunFiles:
    """What the chief writes in model_dir besides checkpoints: the model
    configuration, the flags, history.jsonl, TensorBoard events and
    metrics.json. Other workers of a multi-worker run write none of them.

    Args:
        model_dir: The run directory.
        enabled: Whether this process writes (it is the chief).
    """

    def __init__(self, model_dir: str, enabled: bool):
        self.model_dir, self.enabled = model_dir, enabled
        self.history = History(os.path.join(model_dir, HISTORY_FILE))
        self._writers = {}

    def start(self, model: VAE, config: TrainConfig, resuming: bool,
              step: int) -> list[dict]:
        """Writes the configuration and flags, opens the TensorBoard
        writers; returns the history records up to `step`."""
        if not self.enabled:
            return []
        os.makedirs(self.model_dir, exist_ok=True)
        if not resuming:
            saving.save_model_config(model, self.model_dir)
        write_flags(self.model_dir, config)
        for name in ("train", "eval"):
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, TENSORBOARD_SUBDIR, name))
        return self.history.truncate(step)

    def training_scalars(self, step: int, values: dict) -> None:
        """TensorBoard scalars of the training run (None values skipped)."""
        if self.enabled:
            with self._writers["train"].as_default():
                for name, value in values.items():
                    if value is not None:
                        summary_scalar(name, value, step)

    def evaluation(self, record: dict, results: dict, model: VAE,
                   dataset: data_lib.Dataset, seed: int) -> None:
        """Appends `record` to history.jsonl; writes the evaluation scalars
        and the image grids to TensorBoard."""
        if not self.enabled:
            return
        self.history.append(record)
        step = record["step"]
        with self._writers["eval"].as_default():
            for name, value in results.items():
                if value is not None:
                    summary_scalar(name, value, step)
            _write_images(model, dataset, seed, step)
        for writer in self._writers.values():
            writer.flush()

    def metrics(self, metrics: dict) -> None:
        if self.enabled:
            saving.write_json_atomic(
                os.path.join(self.model_dir, METRICS_FILE), metrics)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


# --------------------------------------------------------------------------
# Progress, throughput and signals.

class _Mean:
    """Running mean of the per-example training terms over some steps."""

    def __init__(self):
        self.sums, self.examples, self.steps = np.zeros(len(TRAIN_TERMS)), 0, 0

    def add(self, sums: np.ndarray, examples: int) -> None:
        self.sums += sums
        self.examples += examples
        self.steps += 1

    def means(self) -> dict:
        if not self.examples:
            return {term: None for term in TRAIN_TERMS}
        return {term: float(v / self.examples)
                for term, v in zip(TRAIN_TERMS, self.sums)}


class Progress:
    """Shows step, epoch, examples/s, loss and ETA while training.

    On a terminal it redraws one progress-bar line (at most ten times a
    second); otherwise it logs a line every `log_every` steps.
    """

    def __init__(self, total_steps: int, steps_per_epoch: int,
                 batch_size: int, log_every: int, stream=None):
        self.total, self.per_epoch = total_steps, steps_per_epoch
        self.batch_size, self.log_every = batch_size, log_every
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw, self._drawn = 0.0, False

    def line(self, step: int, loss: float | None,
             examples_per_sec: float | None, bar_width: int = 0) -> str:
        """One status line, e.g. "step 600/5400  epoch 2/10  [===   ]
        12,345 ex/s  loss 98.1  ETA 0:00:21"."""
        epochs = math.ceil(self.total / self.per_epoch)
        parts = [f"step {step}/{self.total}",
                 f"epoch {max(1, math.ceil(step / self.per_epoch))}/{epochs}"]
        if bar_width:
            done = int(bar_width * step / max(self.total, 1))
            parts.append("[" + "=" * done + " " * (bar_width - done) + "]")
        if examples_per_sec:
            parts.append(f"{examples_per_sec:,.0f} ex/s")
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if examples_per_sec and step < self.total:
            seconds = (self.total - step) * self.batch_size / examples_per_sec
            parts.append(f"ETA {_duration(seconds)}")
        return "  ".join(parts)

    def update(self, step: int, loss: float | None,
               examples_per_sec: float | None) -> None:
        """Reports that `step` steps are done, with the recent mean loss."""
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and step < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self.line(step, loss, examples_per_sec,
                                               bar_width=30) + "\033[K")
            self.stream.flush()
            self._drawn = True
        elif step % self.log_every == 0 or step == self.total:
            logging.info(self.line(step, loss, examples_per_sec))

    def end_line(self) -> None:
        """Ends the progress-bar line before other output."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Throughput:
    """Examples per second over the steps timed (compilation excluded)."""

    def __init__(self):
        self.examples, self.seconds = 0, 0.0
        self._recent = []  # (seconds, examples) of the last steps

    def add(self, seconds: float, examples: int) -> None:
        self.examples += examples
        self.seconds += seconds
        self._recent = (self._recent + [(seconds, examples)])[-50:]

    @property
    def overall(self) -> float | None:
        return self.examples / self.seconds if self.seconds else None

    @property
    def recent(self) -> float | None:
        seconds = sum(s for s, _ in self._recent)
        return sum(e for _, e in self._recent) / seconds if seconds else None


class _StopSignals:
    """Records SIGINT/SIGTERM so that the loop can save and stop between
    steps; a second signal stops at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle)
                              for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("Received %s: saving a checkpoint after this step "
                        "(send it again to stop at once).",
                        signal.Signals(signum).name)

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------
# The loop.

def train_and_evaluate(config: TrainConfig, model_dir: str) -> dict:
    """Trains (or resumes) the configured VAE in `model_dir` and evaluates it.

    Args:
        config: The run's settings.
        model_dir: The run directory (see the module docstring); created if
            needed, resumed if it holds this model.

    Returns:
        The content of metrics.json: the final evaluation (eval_elbo,
        eval_rate, eval_distortion, eval_iwae), step, epoch,
        examples_per_sec, and the configuration.

    Raises:
        data.DatasetError: The data cannot be loaded.
        ModelDirError: `model_dir` holds another model or foreign files.
        ValueError: Settings that do not fit the data (e.g. a bernoulli
            likelihood on grayscale data with binarize="none").
        TrainingDiverged: The loss became NaN or infinite.
        Interrupted: SIGINT/SIGTERM (after saving a checkpoint).
    """
    model_dir = os.fspath(model_dir)
    strategy = make_strategy(config.strategy)
    distributed = config.strategy != "default"
    chief = is_chief(strategy)
    tf_keras.utils.set_random_seed(config.seed)

    dataset = load_data(config)
    logging.info("Data: %s", dataset.summary())
    n_train = len(dataset.splits["train"])
    steps_per_epoch = n_train // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={config.batch_size} is larger than the "
                         f"training split of {dataset.name} ({n_train} "
                         f"examples); lower it.")
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    with strategy.scope():
        model = build_model(config, dataset.data_shape)
        optimizer = build_optimizer(config)
        _base_optimizer(optimizer).build(model.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    check_data(model, dataset)
    kl = resolve_kl(config, model)
    resuming = check_model_dir(model_dir, model.get_config())

    # Checkpoints: the chief writes model_dir; other workers of a
    # multi-worker run take part in every save into a scratch directory.
    checkpoint = saving.make_checkpoint(model, optimizer, step_var)
    scratch = None if chief else tempfile.mkdtemp(prefix="tfpvae_worker_")
    manager = tf.train.CheckpointManager(
        checkpoint, scratch or saving.checkpoint_dir(model_dir),
        max_to_keep=config.keep_checkpoints)
    # The best model by the held-out bound, for selection by validation.
    best_manager = tf.train.CheckpointManager(
        saving.make_checkpoint(model),
        scratch or saving.best_checkpoint_dir(model_dir), max_to_keep=1)
    latest = tf.train.latest_checkpoint(saving.checkpoint_dir(model_dir))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("Resuming from %s (step %d).", latest,
                     int(step_var.numpy()))
    elif config.prior == "vamp":
        rng = np.random.default_rng(config.seed)
        index = rng.choice(n_train, min(config.mixture_components, n_train),
                           replace=False)
        pseudo_inputs = dataset.splits["train"][np.sort(index)]
        model.init_prior_from_data(pseudo_inputs)
    step = int(step_var.numpy())
    saved_step = step if latest else None

    files = RunFiles(model_dir, enabled=chief)
    records = files.start(model, config, resuming, step)
    previous_elapsed = records[-1]["elapsed"] if records else 0.0
    last_eval = records[-1] if records and records[-1]["step"] == step else None
    # Every worker evaluates (the same numbers), so all agree on when the
    # best checkpoint is saved and when to stop early.
    selection = Selection(
        "iwae" if config.eval_k else "elbo", config.early_stopping_patience,
        History(os.path.join(model_dir, HISTORY_FILE)).read(), step)
    logging.info("Model: %s", json.dumps(model.get_config(), sort_keys=True))
    logging.info("Training steps %d to %d (%d per epoch, batch %d, kl=%s, %s "
                 "strategy with %d replica(s)) in %s.", step, total_steps,
                 steps_per_epoch, config.batch_size, kl, config.strategy,
                 strategy.num_replicas_in_sync, model_dir)

    train_step = build_train_step(
        config, model, optimizer, kl=kl,
        strategy=strategy if distributed else None,
        learning_rate=learning_rate_schedule(config, total_steps,
                                             steps_per_epoch))
    logging.info("XLA (--jit_compile=%s): %s.", config.jit_compile,
                 "on" if resolve_jit_compile(config.jit_compile, model,
                                             config.n_samples) else "off")
    evaluator = Evaluator(model, kl=kl, k=config.eval_k,
                          batch_size=config.eval_batch_size, seed=config.seed)

    @tf.function
    def weights_finite():
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                              for v in model.variables])

    def save_checkpoint():
        nonlocal saved_step
        if saved_step == step:
            return
        if not bool(weights_finite()):
            raise TrainingDiverged(
                f"the weights became NaN or infinite by step {step}; stopped "
                f"without saving. {_keep_message(saved_step, model_dir)}")
        step_var.assign(step)
        manager.save(checkpoint_number=step)
        saved_step = step

    def evaluate(train_means):
        results = evaluator(dataset)
        save_checkpoint()
        if selection.update(step, results):
            best_manager.save(checkpoint_number=step)
        if not chief:
            return None
        record = {
            "step": step, "epoch": step / steps_per_epoch,
            "elapsed": previous_elapsed + time.monotonic() - session_start,
            "wall_time": time.time(),
            **{f"train_{k}": v for k, v in train_means.items()},
            **{f"eval_{k}": v for k, v in results.items()},
            "eval_k": config.eval_k,
            "beta": kl_weight(config, max(step - 1, 0)),
            "learning_rate": _learning_rate(optimizer),
            "examples_per_sec": throughput.recent}
        files.evaluation(record, results, model, dataset, config.seed)
        logging.info("Evaluation at step %d (%s split): elbo %.4f, rate %.4f, "
                     "distortion %.4f%s.", step, dataset.eval_split,
                     results["elbo"], results["rate"], results["distortion"],
                     "" if results["iwae"] is None else
                     f", IWAE_{config.eval_k} {results['iwae']:.4f}")
        return record

    # The data: epoch e is ordered by (seed, e); a resumed run skips the
    # batches of its epoch that were already trained on.
    epoch, skip = divmod(step, steps_per_epoch)
    train_data = data_lib.make_train_dataset(
        dataset, config.batch_size, seed=config.seed, binarize=dataset.binarize,
        initial_epoch=epoch)
    first_epoch = train_data.skip(skip) if skip else train_data
    every_epoch = train_data
    if distributed:
        first_epoch = strategy.experimental_distribute_dataset(first_epoch)
        every_epoch = strategy.experimental_distribute_dataset(every_epoch)

    progress = Progress(total_steps, steps_per_epoch, config.batch_size,
                        config.log_every)
    train_loop = None
    throughput = _Throughput()
    log_window, eval_window = _Mean(), _Mean()
    session_start = time.monotonic()
    try:
        with _StopSignals() as signals:
            source = first_epoch
            stepped = looped = False  # Their first calls compile: untimed.
            while step < total_steps and not selection.stop:
                tick = time.perf_counter()
                iterator = iter(source)
                epoch_left = steps_per_epoch - step % steps_per_epoch
                while epoch_left > 0:
                    # A call never crosses a log, evaluation or checkpoint
                    # step, nor the epoch's end: the steps between them run
                    # in calls of up to --steps_per_execution steps. The
                    # first step runs alone, so that its XLA compilation
                    # (or the fallback without XLA) is settled before the
                    # loop is traced around the step that works.
                    n = min(config.steps_per_execution, epoch_left,
                            total_steps - step,
                            _next_boundary(step, config.log_every),
                            _next_boundary(step, config.eval_every or
                                           steps_per_epoch),
                            _next_boundary(step, config.checkpoint_every))
                    if n == 1 or train_loop is None:
                        n = 1
                        sums = train_step(
                            next(iterator), tf.constant(step, tf.int64),
                            tf.constant(kl_weight(config, step), tf.float32))
                        sums = sums.numpy()[None]
                        timed, stepped = stepped, True
                    else:
                        sums = train_loop(iterator, tf.constant(step, tf.int64),
                                          tf.constant(n, tf.int32)).numpy()
                        timed, looped = looped, True
                    if timed:
                        throughput.add(time.perf_counter() - tick,
                                       n * config.batch_size)
                    if train_loop is None and config.steps_per_execution > 1:
                        train_loop = make_train_loop(config, train_step.step)
                    finite = np.all(np.isfinite(sums), axis=1)
                    if not finite.all():
                        bad = int(np.argmin(finite))
                        progress.end_line()
                        raise TrainingDiverged(
                            f"the loss became {sums[bad, 0] / config.batch_size} "
                            f"at step {step + bad + 1}; stopped without saving. "
                            f"{_keep_message(saved_step, model_dir)} Try a "
                            f"lower --learning_rate (now "
                            f"{config.learning_rate:g}) or --kl_warmup_steps.")
                    for row in sums:
                        log_window.add(row, config.batch_size)
                        eval_window.add(row, config.batch_size)
                    step += n
                    epoch_left -= n
                    progress.update(step, log_window.means()["loss"],
                                    throughput.recent)

                    if step % config.log_every == 0 or step == total_steps:
                        files.training_scalars(step, {
                            **log_window.means(),
                            "beta": kl_weight(config, step - 1),
                            "learning_rate": _learning_rate(optimizer),
                            "examples_per_sec": throughput.recent})
                        log_window = _Mean()
                    if (step % config.eval_every == 0 if config.eval_every
                            else step % steps_per_epoch == 0):
                        progress.end_line()
                        last_eval = evaluate(eval_window.means())
                        eval_window = _Mean()
                        if selection.stop:
                            logging.info(
                                "Stopping early: the held-out %s has not "
                                "improved for %d evaluations (best %.4f at "
                                "step %d).", selection.metric,
                                config.early_stopping_patience,
                                selection.best_value, selection.best_step)
                            break
                    elif (config.checkpoint_every
                          and step % config.checkpoint_every == 0):
                        save_checkpoint()
                    if signals.signum is not None:
                        progress.end_line()
                        save_checkpoint()
                        raise Interrupted(signals.signum, step, model_dir)
                    if step >= total_steps:
                        break
                    tick = time.perf_counter()
                source = every_epoch
        progress.end_line()
        if last_eval is None or last_eval["step"] != step:
            last_eval = evaluate(eval_window.means())
        save_checkpoint()
    finally:
        files.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if not chief:
        return {}

    metrics = {
        "step": step, "epoch": step / steps_per_epoch,
        "examples_per_sec": (throughput.overall
                             or _previous_throughput(model_dir)),
        **{k: v for k, v in last_eval.items() if k.startswith("eval_")},
        "eval_split": dataset.eval_split, "kl": kl,
        "best_step": selection.best_step,
        f"best_eval_{selection.metric}": selection.best_value,
        "stopped_early": selection.stop,
        "dataset": {"name": dataset.name, "data_shape": list(dataset.data_shape),
                    "kind": dataset.kind, "binarize": dataset.binarize,
                    "sizes": {k: len(v) for k, v in dataset.splits.items()}},
        "config": config.to_dict(), "model_config": model.get_config(),
    }
    files.metrics(metrics)
    if config.plots or config.export:
        # The model selected by validation (as tfpvae.load(model_dir,
        # best=True)), not the last step's.
        has_best = tf.train.latest_checkpoint(
            saving.best_checkpoint_dir(model_dir)) is not None
        selected = saving.load(model_dir, best=has_best)
        logging.info("Plots and export use the %s.",
                     f"best checkpoint (step {selection.best_step}, held-out "
                     f"{selection.metric} {selection.best_value:.4f})"
                     if has_best else "latest checkpoint")
    if config.plots:
        plots_lib.plot_training_run(selected, dataset, model_dir)
    if config.export:
        path = export_lib.export_saved_model(
            selected, os.path.join(model_dir, SAVED_MODEL_SUBDIR))
        logging.info("Exported a SavedModel to %s.", path)
    logging.info("Done: step %d, eval elbo %.4f, %s examples/s; results in %s.",
                 step, metrics["eval_elbo"],
                 "?" if metrics["examples_per_sec"] is None
                 else f"{metrics['examples_per_sec']:,.0f}", model_dir)
    return metrics


def _learning_rate(optimizer) -> float:
    """The current learning rate (the schedule's value at this step)."""
    return float(tf.convert_to_tensor(_base_optimizer(optimizer).learning_rate))


def _keep_message(saved_step, model_dir) -> str:
    if saved_step is None:
        return "No checkpoint had been saved yet."
    return (f"The last good checkpoint (step {saved_step}) is kept in "
            f"{saving.checkpoint_dir(model_dir)}.")


def _previous_throughput(model_dir: str) -> float | None:
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("examples_per_sec")
