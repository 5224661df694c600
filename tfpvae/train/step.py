"""The training step: optimizers, schedules, the compiled update, XLA.

For a global batch of B examples the loss is

    loss = -(1/B) sum_i objective_i,

where objective is what the model's `training_terms` reports per example:
the beta-weighted ELBO (n_samples = 1) or the IWAE bound with k = n_samples
(`LatentVariableModel.loss`). Under a tf.distribute strategy every replica
sums the objective of its share of the batch and divides by the global B, so
the gradients summed across replicas are those of the single-device loss.
The KL weight warms up linearly: beta_t = beta * min(1, t / kl_warmup_steps).

On one device the whole step, optimizer update included, is one
`tf.function`, XLA-compiled with `jit_compile` ("auto": where XLA was
measured faster, see `resolve_jit_compile`; rebuilt without XLA, after one
warning, if XLA cannot compile it). Under the "mirrored" and
"multi_worker" strategies the optimizer's cross-replica update cannot run
inside XLA, so XLA compiles the loss and gradients only. With
mixed_float16 the optimizer is a `LossScaleOptimizer`; the distributions
always compute in float32.

The noise of step t is drawn with the stateless seed
fold_in(fold_in((seed, 1), t), replica), so on CPU two runs with the same
settings give the same losses.
"""

from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf
import tf_keras
from absl import logging

#: Seed stream of the training noise: fold (seed, stream), then the step.
TRAIN_STREAM = 1

#: Errors TensorFlow raises when XLA cannot compile a function.
_XLA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
               tf.errors.InternalError)

#: XLA options of the compiled training step (`use_fast_xla_flags`). With
#: region-based copy insertion XLA updates the weights in place instead of
#: copying them every step: ~8% more images/s for the MLP on CPU, with
#: bitwise the same results (docs/performance.md). GPUs ignore it.
FAST_XLA_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)

_OPTIMIZERS = {
    "adam": tf_keras.optimizers.Adam,
    "rmsprop": tf_keras.optimizers.RMSprop,
    "sgd": tf_keras.optimizers.SGD,
}


def term_names(model, objective=None) -> tuple[str, ...]:
    """The training terms the step reports (sums over its batch), in order:
    loss, elbo, rate, distortion, each layer's rate when there are several,
    then the model's and the objective's `extra_terms`."""
    names = ("loss", "elbo", "rate", "distortion")
    if len(model.latent_sizes) > 1:
        names += tuple(f"rate_layer{layer}"
                       for layer in range(1, len(model.latent_sizes) + 1))
    return names + extra_term_names(model, objective)


def extra_term_names(model, objective=None) -> tuple[str, ...]:
    """The model's and the objective's `extra_terms`, each once."""
    return tuple(dict.fromkeys(tuple(model.extra_terms) + tuple(
        getattr(objective, "extra_terms", ()))))


def build_auxiliary_optimizer(objective):
    """The tf_keras Adam of the objective's auxiliary network (FactorVAE's
    discriminator: beta_1 0.5, beta_2 0.9 as Kim & Mnih), built for its
    variables; None without one."""
    auxiliary = getattr(objective, "auxiliary", None)
    if auxiliary is None:
        return None
    optimizer = tf_keras.optimizers.Adam(auxiliary.learning_rate, beta_1=0.5,
                                         beta_2=0.9)
    optimizer.build(list(auxiliary.variables))
    return optimizer


def build_optimizer(config):
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


def learning_rate_schedule(config, total_steps: int,
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


def base_optimizer(optimizer):
    """The optimizer itself, unwrapped from a LossScaleOptimizer."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def learning_rate(optimizer) -> float:
    """The optimizer's current learning rate (the schedule's at this step)."""
    return float(tf.convert_to_tensor(base_optimizer(optimizer).learning_rate))


def kl_weight(config, step: int) -> float:
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


def resolve_jit_compile(jit_compile: bool | str, model,
                        n_samples: int) -> bool:
    """Whether to XLA-compile the training step: `jit_compile`, with "auto"
    resolved.

    "auto" turns XLA on where `python tools/benchmark.py` measured it
    faster (docs/performance.md): MLP encoders and decoders trained on the
    ELBO, with or without a flow posterior, in float32 or float16. It stays
    off for convolutions (TensorFlow's oneDNN convolutions beat XLA's on
    CPU), for the IWAE bound (n_samples > 1) and for mixed_bfloat16 (XLA's
    CPU matmuls do not use the AMX bfloat16 units that oneDNN uses).
    """
    if jit_compile != "auto":
        return bool(jit_compile)
    config = model.get_config()
    return (config.get("architecture") == "mlp" and n_samples == 1
            and config.get("dtype_policy") != "mixed_bfloat16")


def make_train_step(model, optimizer,
                    strategy: tf.distribute.Strategy | None, *, kl: str,
                    n_samples: int, global_batch_size: int, seed: int,
                    jit_compile: bool | str,
                    learning_rate: Callable[[tf.Tensor], tf.Tensor] | None
                    = None, free_bits: float = 0.0,
                    gradient_estimator: str = "standard", objective=None,
                    auxiliary_optimizer=None) -> Callable:
    """Builds the compiled training step.

    On one device (strategy None) the whole step, optimizer update included,
    is one `tf.function`, XLA-compiled with `jit_compile`. Under a
    tf.distribute strategy the optimizer's cross-replica update cannot run
    inside XLA, so `jit_compile` compiles the loss and gradients only.
    With XLA it first adds `FAST_XLA_FLAGS` to XLA_FLAGS
    (`use_fast_xla_flags`); `build_train_step` adds the fallback for steps
    XLA cannot compile.

    Args:
        model: The model (built under `strategy.scope()`).
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
        free_bits, gradient_estimator: Of the model's bound (`loss`).
        objective: A `tfpvae.penalties` objective (default: the model's
            `training_terms`); its auxiliary network, if any, is updated
            after the model, with `auxiliary_optimizer`
            (`build_auxiliary_optimizer`).

    Returns:
        `step_fn(x, step, beta)`: applies one update for the (distributed)
        batch x at global step `step` (int64) with KL weight `beta`
        (float32), and returns the sums over the global batch of
        `term_names(model)` as a float32 tensor.
    """
    jit_compile = resolve_jit_compile(jit_compile, model, n_samples)
    if jit_compile:
        use_fast_xla_flags()
    variables = model.trainable_variables
    base_seed = tf.constant([seed, TRAIN_STREAM], tf.int64)
    rate_variable = base_optimizer(optimizer).learning_rate

    def set_learning_rate(step):
        if learning_rate is not None:
            rate_variable.assign(learning_rate(step))

    loss_and_gradients = _loss_and_gradients(
        model, optimizer, variables, kl=kl, n_samples=n_samples,
        global_batch_size=global_batch_size, free_bits=free_bits,
        gradient_estimator=gradient_estimator, objective=objective)
    auxiliary_update = _auxiliary_update(model, objective, auxiliary_optimizer,
                                         global_batch_size)
    if strategy is not None and jit_compile:
        loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(x, step, beta):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, step), replica)
        grads, sums = loss_and_gradients(x, step_seed, beta, step)
        optimizer.apply_gradients(zip(grads, variables))
        if auxiliary_update is not None:
            auxiliary_update(x, tf.random.experimental.stateless_fold_in(
                step_seed, 1))
        return sums

    return _compiled(replica_step, set_learning_rate, strategy, jit_compile)


def _compiled(replica_step, set_learning_rate, strategy, jit_compile):
    """`step_fn(x, step, beta)`: on one device one `tf.function` (with XLA
    as `jit_compile` says) that sets the rate and runs `replica_step`; under
    a strategy, the rate set in cross-replica context, `replica_step` on
    every replica and the term sums added up."""
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


def _loss_and_gradients(model, optimizer, variables, *, kl, n_samples,
                        global_batch_size, free_bits, gradient_estimator,
                        objective):
    """`fn(batch, seed, beta, step) -> (gradients, term sums)` of one
    replica: the loss is -sum(objective) / global_batch_size (scaled and
    unscaled for a LossScaleOptimizer)."""
    scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    names = extra_term_names(model, objective)
    terms_of = (objective.terms if objective is not None else
                lambda model, batch, step, **kwargs: model.training_terms(
                    batch, **kwargs))

    def loss_and_gradients(batch, step_seed, beta, step):
        if not isinstance(batch, dict):
            batch = {"x": batch}  # A bare tensor is the data itself.
        with tf.GradientTape() as tape:
            terms = terms_of(
                model, batch, step=step, kl=kl, n_samples=n_samples, beta=beta,
                seed=step_seed, free_bits=free_bits,
                gradient_estimator=gradient_estimator)
            loss_sum = -tf.reduce_sum(terms.objective)
            loss = loss_sum / global_batch_size
            if scaling:
                loss = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(loss, variables)
        if scaling:
            grads = optimizer.get_unscaled_gradients(grads)
        sums = [loss_sum, tf.reduce_sum(terms.elbo), tf.reduce_sum(terms.rate),
                tf.reduce_sum(terms.distortion)]
        if len(terms.layer_rates) > 1:
            sums += [tf.reduce_sum(rate) for rate in terms.layer_rates]
        sums += [tf.reduce_sum(terms.extras[name]) for name in names]
        return grads, tf.stack(sums)

    return loss_and_gradients


def _auxiliary_update(model, objective, optimizer, global_batch_size):
    """`fn(batch, seed)`: one update of the objective's auxiliary network
    (its loss summed over the replica's batch / global_batch_size), or None."""
    auxiliary = getattr(objective, "auxiliary", None)
    if auxiliary is None:
        return None
    variables = list(auxiliary.variables)

    def update(batch, seed):
        if not isinstance(batch, dict):
            batch = {"x": batch}
        with tf.GradientTape() as tape:
            loss_sum, _ = auxiliary.loss(model, batch, seed)
            loss = loss_sum / global_batch_size
        optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                      variables))

    return update


def build_train_step(config, model, optimizer, *, kl: str,
                     strategy: tf.distribute.Strategy | None = None,
                     learning_rate: Callable[[tf.Tensor], tf.Tensor] | None
                     = None, objective=None,
                     auxiliary_optimizer=None) -> Callable:
    """The training step of `train_and_evaluate` (and of the benchmark).

    `make_train_step` with the configuration's settings and XLA resolved
    (`resolve_jit_compile`); the optimizer's own update is compiled alike.
    If XLA cannot compile the step, its first call logs one warning and
    the step is rebuilt without XLA.

    Args:
        config: The run's settings.
        model: The model (built under `strategy.scope()`).
        optimizer: Its optimizer (`build_optimizer`), built for the model's
            trainable variables.
        kl: "analytic" or "mc" (`resolve_kl`).
        strategy: The tf.distribute strategy, or None for one device.
        learning_rate: `learning_rate_schedule`'s rate(step), or None for
            the optimizer's constant rate.
        objective, auxiliary_optimizer: As `make_train_step`.

    Returns:
        `step_fn(x, step, beta)` as `make_train_step` returns it.
    """
    def build(jit_compile):
        base_optimizer(optimizer).jit_compile = jit_compile
        return make_train_step(
            model, optimizer, strategy, kl=kl, n_samples=config.n_samples,
            global_batch_size=config.batch_size, seed=config.seed,
            jit_compile=jit_compile, learning_rate=learning_rate,
            free_bits=config.free_bits,
            gradient_estimator=config.gradient_estimator, objective=objective,
            auxiliary_optimizer=auxiliary_optimizer)

    return XlaFallback(build, resolve_jit_compile(config.jit_compile, model,
                                                   config.n_samples))


class XlaFallback:
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


def kl_weight_tensor(config, step: tf.Tensor) -> tf.Tensor:
    """`kl_weight` in TensorFlow (float64 math, as Python's), as float32."""
    if config.kl_warmup_steps <= 0:
        return tf.constant(float(config.beta), tf.float32)
    ramp = tf.minimum(tf.constant(1.0, tf.float64),
                      tf.cast(step, tf.float64) / config.kl_warmup_steps)
    return tf.cast(float(config.beta) * ramp, tf.float32)


def make_train_loop(config, step_fn: Callable) -> Callable:
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


def next_boundary(step: int, every: int) -> int:
    """Steps from `step` to the next multiple of `every` (0: none)."""
    return every - step % every if every else 10 ** 18
