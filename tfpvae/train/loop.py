"""The training loop behind `python -m tfpvae.main`, read top to bottom.

`train_and_evaluate(config, model_dir)` loads the data (`tfpvae.inputs`),
builds the model (`tfpvae.models`) and a tf_keras optimizer, and runs a
plain loop over one compiled training step (`tfpvae.train.step`),
evaluating on the held-out split (`tfpvae.evaluation`) at the end of every
epoch (or every `eval_every` steps) and at the end. What it leaves in the
run directory is listed in `tfpvae.run_dir`; what it records in
`tfpvae.train.records`.

Each line of history.jsonl holds: step, epoch (fractional), elapsed (training
seconds over all sessions), wall_time, train_loss, train_elbo, train_rate,
train_distortion (means over the steps since the previous evaluation, None
right after a resume), eval_elbo, eval_rate, eval_distortion, eval_iwae
(None when eval_k = 0), eval_k, beta and learning_rate (those of the latest
step), examples_per_sec (of the latest 50 steps); with several latent layers
also train_ and eval_rate_layer<l>.

Determinism. The initial weights come from `seed`; the noise of step t is
drawn with a stateless seed of (seed, t), and the data order of epoch e is
seeded by (seed, e) (`data.make_train_dataset`), so on CPU two runs with
the same settings give the same losses.

Resuming. Running again with the same `model_dir` restores the latest
checkpoint and continues from its global step with the data order the
uninterrupted run would have had (the epoch and the batch within it follow
from the step), so a run killed at any moment loses only the steps since its
last checkpoint. The training flags may change between sessions (each change
is logged): the learning rate follows the new flags, so a run can be
resumed with a longer --epochs and an anneal (--lr_schedule=cosine
--lr_decay_epochs). SIGINT and SIGTERM save a checkpoint after the current
step and raise `Interrupted`. A directory holding a different model (any
difference in `model_config.json`) is refused with `ModelDirError` before
anything in it is touched.

Safety. A non-finite loss stops the run with `TrainingDiverged` without
saving; the last checkpoint (saved only when every weight is finite) stays.
The checkpoint a session resumes from is verified first; a damaged one is
skipped for the newest intact one with a warning, and none intact is a
`CheckpointError` (`run_dir.find_checkpoint`). A write that fails for lack
of space or permission stops the run with `StorageError`, naming the last
good checkpoint; a checkpoint save that fails leaves nothing behind. The
run's flags (flags.txt, flags.json) are written with the session's first
checkpoint, so a session refused or diverging before it leaves the flags
of the run it did not train as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfpvae import evaluation
from tfpvae import inputs
from tfpvae import models
from tfpvae import penalties
from tfpvae import run_dir
from tfpvae.train import devices
from tfpvae.train import progress as progress_lib
from tfpvae.train import records
from tfpvae.train import step as step_lib


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


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


class _Mean:
    """Running mean of the per-example training terms over some steps."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.sums, self.examples = np.zeros(len(names)), 0

    def add(self, sums: np.ndarray, examples: int) -> None:
        self.sums += sums
        self.examples += examples

    def means(self) -> dict:
        if not self.examples:
            return {name: None for name in self.names}
        return {name: float(v / self.examples)
                for name, v in zip(self.names, self.sums)}


def train_and_evaluate(config, model_dir: str, *,
                       build_model=models.build_model) -> dict:
    """Trains (or resumes) the configured model in `model_dir`, evaluates it.

    Args:
        config: The run's settings, a `tfpvae.config.TrainConfig`.
        model_dir: The run directory (see `tfpvae.run_dir`); created if
            needed, resumed if it holds this model.
        build_model: `build_model(config, data_shape, num_classes=...)`
            returning the model (default `tfpvae.models.build_model`); a
            family of your own trains through the same loop.

    Returns:
        The content of metrics.json: the final evaluation (eval_elbo,
        eval_rate, eval_distortion, eval_iwae), step, epoch,
        examples_per_sec, and the configuration.

    Raises:
        data.DatasetError: The data cannot be loaded.
        ModelDirError: `model_dir` holds another model or foreign files, or
            another process is training in it.
        ValueError: Settings that do not fit the data (e.g. a bernoulli
            likelihood on grayscale data with binarize="none").
        TrainingDiverged: The loss became NaN or infinite.
        Interrupted: SIGINT/SIGTERM (after saving a checkpoint).
        CheckpointError: Every checkpoint of the run is damaged.
        StorageError: A file could not be written (no space, read-only).
    """
    model_dir = os.fspath(model_dir)
    run = None
    try:
        run = _Run(config, model_dir, build_model)
        try:
            with progress_lib.StopSignals() as signals:
                run.train(signals)
                run.finish()
        finally:
            run.close()
        metrics = run.write_metrics()
        if signals.signum is not None:  # During the final evaluation.
            raise progress_lib.Interrupted(signals.signum, run.step, model_dir)
        return metrics
    except (OSError, tf.errors.OpError) as e:
        problem = run_dir.storage_problem(e)
        if problem is None:
            raise
        raise _storage_error(problem, f"writing {_written(e, model_dir)}",
                             model_dir, run.saved_step if run else None
                             ) from None
    finally:
        if run is not None:
            run.lock.release()


class _Run:
    """One session of a training run: its state, and the loop's steps."""

    def __init__(self, config, model_dir: str, build_model):
        self.config, self.model_dir = config, model_dir
        self.strategy = devices.make_strategy(config.strategy)
        self.distributed = config.strategy != "default"
        self.chief = devices.is_chief(self.strategy)
        tf_keras.utils.set_random_seed(config.seed)
        self._load_data()
        self._build(build_model)
        logging.info(devices.describe(
            self.strategy, strategy_name=config.strategy,
            precision=self.model.get_config().get("dtype_policy") or "none",
            mixed_precision=config.mixed_precision,
            xla=step_lib.resolve_jit_compile(config.jit_compile, self.model,
                                             config.n_samples),
            jit_compile=config.jit_compile))
        self.resuming = run_dir.check_model_dir(model_dir,
                                                self.model.get_config())
        # Before anything in the directory is touched: a second process
        # training in it is refused (the chief writes it; other workers of a
        # multi-worker run write scratch directories).
        self.lock = run_dir.RunLock(model_dir, enabled=self.chief)
        try:
            self._open_checkpoints()
            self._restore_or_initialize()
            self._open_records()
            self._prepare_training()
        except BaseException:
            self.lock.release()
            raise

    # ------------------------------------------------------------------ #
    # Setting up.

    def _load_data(self) -> None:
        config = self.config
        self.dataset = inputs.load_data(config)
        logging.info("Data: %s", self.dataset.summary())
        n_train = len(self.dataset.splits["train"])
        self.steps_per_epoch = n_train // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"--batch_size={config.batch_size} is larger than the training "
                f"split of {self.dataset.name} ({n_train} examples); lower it.")
        self.total_steps = (config.max_steps
                            or config.epochs * self.steps_per_epoch)

    def _build(self, build_model) -> None:
        config, dataset = self.config, self.dataset
        classes = inputs.num_classes(config, dataset)
        with self.strategy.scope():
            self.model = build_model(config, dataset.data_shape,
                                     num_classes=classes)
            self.optimizer = step_lib.build_optimizer(config)
            step_lib.base_optimizer(self.optimizer).build(
                self.model.trainable_variables)
            self.objective = penalties.build_objective(
                config, len(dataset.splits["train"]))
            self.auxiliary_optimizer = step_lib.build_auxiliary_optimizer(
                self.objective)
            self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="step")
            # Training seconds over all sessions up to the checkpoint, so
            # that a resumed run's `elapsed` goes on from where it stopped.
            self.elapsed_var = tf.Variable(0.0, dtype=tf.float64,
                                           trainable=False, name="elapsed")
        self.objective.check(self.model)
        inputs.check_data(self.model, dataset)
        self.kl = evaluation.resolve_kl(config.kl, self.model)
        self.labelled = (inputs.labelled_subset(config, dataset, classes)
                         if "labelled" in self.model.batch_fields else None)

    def _open_checkpoints(self) -> None:
        # The chief writes model_dir; other workers of a multi-worker run
        # take part in every save into a scratch directory.
        self.scratch = (None if self.chief
                        else tempfile.mkdtemp(prefix="tfpvae_worker_"))
        if self.chief:
            for directory in (run_dir.checkpoint_dir(self.model_dir),
                              run_dir.best_checkpoint_dir(self.model_dir)):
                run_dir.remove_unfinished_saves(directory)
        # An objective with a network of its own (FactorVAE's discriminator)
        # is saved and restored with the model.
        self.extra = ({} if self.auxiliary_optimizer is None else dict(
            objective=self.objective,
            auxiliary_optimizer=self.auxiliary_optimizer))
        self.checkpoint = run_dir.make_checkpoint(
            self.model, self.optimizer, self.step_var,
            elapsed=self.elapsed_var, **self.extra)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            self.scratch or run_dir.checkpoint_dir(self.model_dir),
            max_to_keep=self.config.keep_checkpoints)
        # The best model by the held-out bound, for selection by validation.
        self.best_manager = tf.train.CheckpointManager(
            run_dir.make_checkpoint(self.model),
            self.scratch or run_dir.best_checkpoint_dir(self.model_dir),
            max_to_keep=1)

    def _restore_or_initialize(self) -> None:
        # The newest intact checkpoint: a damaged one is skipped with a warning.
        latest = run_dir.find_checkpoint(run_dir.checkpoint_dir(self.model_dir))
        self.restored_elapsed = None
        if latest:
            # A checkpoint saved before they kept the training time has none.
            timed = "elapsed" in run_dir.checkpoint_objects(latest)
            checkpoint = self.checkpoint if timed else run_dir.make_checkpoint(
                self.model, self.optimizer, self.step_var, **self.extra)
            checkpoint.restore(latest).assert_existing_objects_matched()
            if timed:
                self.restored_elapsed = float(self.elapsed_var.numpy())
            logging.info("Resuming from %s (step %d).", latest,
                         int(self.step_var.numpy()))
        else:
            self.model.initialize_from_data(
                self.dataset.splits["train"],
                np.random.default_rng(self.config.seed),
                labels=self.dataset.labels.get("train"))
        if self.labelled is not None and self.chief:
            run_dir.write_json_atomic(
                run_dir.path(self.model_dir, run_dir.LABELLED_FILE),
                {"split": "train", "indices": list(self.labelled.indices),
                 "seed": self.config.seed})
        self.step = int(self.step_var.numpy())
        self.saved_step = self.step if latest else None
        self.flags_written = False

    def _open_records(self) -> None:
        config = self.config
        self.files = records.RunFiles(self.model_dir, enabled=self.chief)
        history = self.files.start(self.model, config, self.resuming,
                                   self.step)
        # The checkpoint's training time; for an older checkpoint, the last
        # evaluation's (which misses the steps after it).
        self.previous_elapsed = (
            self.restored_elapsed if self.restored_elapsed is not None
            else history[-1]["elapsed"] if history else 0.0)
        self.last_eval = (history[-1] if history
                          and history[-1]["step"] == self.step else None)
        # Every worker evaluates (the same numbers), so all agree on when the
        # best checkpoint is saved and when to stop early.
        self.selection = Selection(
            "iwae" if config.eval_k else "elbo",
            config.early_stopping_patience,
            run_dir.History(self.model_dir).read(), self.step)
        logging.info("Model: %s", json.dumps(self.model.get_config(),
                                             sort_keys=True))
        logging.info("Training steps %d to %d (%d per epoch, batch %d, "
                     "kl=%s) in %s.", self.step, self.total_steps,
                     self.steps_per_epoch, config.batch_size, self.kl,
                     self.model_dir)

    def _prepare_training(self) -> None:
        config = self.config
        self.train_step = step_lib.build_train_step(
            config, self.model, self.optimizer, kl=self.kl,
            strategy=self.strategy if self.distributed else None,
            learning_rate=step_lib.learning_rate_schedule(
                config, self.total_steps, self.steps_per_epoch),
            objective=self.objective,
            auxiliary_optimizer=self.auxiliary_optimizer)
        self.train_loop = None
        self.evaluator = evaluation.Evaluator(
            self.model, kl=self.kl, k=config.eval_k,
            batch_size=config.eval_batch_size, seed=config.seed)
        self.term_names = step_lib.term_names(self.model, self.objective)
        self.throughput = progress_lib.Throughput()
        self.log_window = _Mean(self.term_names)
        self.eval_window = _Mean(self.term_names)
        self.progress = progress_lib.Progress(
            self.total_steps, self.steps_per_epoch, config.batch_size,
            config.log_every)
        self.session_start = time.monotonic()
        self.stepped = self.looped = False  # Their first calls compile.

    def _batches(self):
        """The training batches from the current step on, epoch after epoch:
        epoch e is ordered by (seed, e); a resumed run skips the batches of
        its epoch that were already trained on.

        Every epoch holds exactly steps_per_epoch batches, and one iterator
        serves the whole run. A new iterator per epoch cost 10-20 s at the
        start of every epoch after the second for the two-layer HVAE of
        flags/results/hvae_vamp.cfg (in freeing the previous epoch's
        iterator, in tf.data's iterator destructor), a third of its epoch;
        a small model lost about 0.6 s."""
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        train_data = inputs.train_batches(
            self.dataset, self.config.batch_size, seed=self.config.seed,
            fields=self.model.batch_fields, initial_epoch=epoch,
            labelled=self.labelled)
        # Each pass over train_data is the next epoch (its own order).
        batches = train_data.repeat().skip(skip)
        if self.distributed:
            return self.strategy.experimental_distribute_dataset(batches)
        return batches

    # ------------------------------------------------------------------ #
    # The loop.

    def train(self, signals) -> None:
        """Trains epoch by epoch until the last step or early stopping."""
        if self.step and self.last_eval is None and self._evaluates(self.step):
            # Killed after saving this step's checkpoint, before recording
            # its evaluation: the same weights give the same evaluation.
            self.evaluate()
        iterator = iter(self._batches())
        while self.step < self.total_steps and not self.selection.stop:
            epoch_left = self.steps_per_epoch - self.step % self.steps_per_epoch
            while epoch_left > 0 and self.step < self.total_steps:
                n = self._run_steps(iterator, epoch_left)
                epoch_left -= n
                if self._after_steps(signals):
                    break
        self.progress.end_line()

    def _run_steps(self, iterator, epoch_left: int) -> int:
        """Runs the steps up to the next log, evaluation or checkpoint step
        (at most --steps_per_execution, within the epoch) in one call."""
        config, step = self.config, self.step
        # The first step runs alone, so that its XLA compilation (or the
        # fallback without XLA) is settled before the loop is traced around
        # the step that works.
        n = min(config.steps_per_execution, epoch_left,
                self.total_steps - step,
                step_lib.next_boundary(step, config.log_every),
                step_lib.next_boundary(step, config.eval_every
                                       or self.steps_per_epoch),
                step_lib.next_boundary(step, config.checkpoint_every))
        tick = time.perf_counter()
        if n == 1 or self.train_loop is None:
            n = 1
            sums = self.train_step(
                next(iterator), tf.constant(step, tf.int64),
                tf.constant(step_lib.kl_weight(config, step), tf.float32))
            sums = sums.numpy()[None]
            timed, self.stepped = self.stepped, True
        else:
            sums = self.train_loop(iterator, tf.constant(step, tf.int64),
                                   tf.constant(n, tf.int32)).numpy()
            timed, self.looped = self.looped, True
        if timed:
            self.throughput.add(time.perf_counter() - tick,
                                n * config.batch_size)
        if self.train_loop is None and config.steps_per_execution > 1:
            self.train_loop = step_lib.make_train_loop(config,
                                                       self.train_step.step)
        self._check_finite(sums)
        for row in sums:
            self.log_window.add(row, config.batch_size)
            self.eval_window.add(row, config.batch_size)
        self.step += n
        self.progress.update(self.step, self.log_window.means()["loss"],
                             self.throughput.recent)
        return n

    def _check_finite(self, sums: np.ndarray) -> None:
        finite = np.all(np.isfinite(sums), axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            self.progress.end_line()
            raise TrainingDiverged(
                f"the loss became {sums[bad, 0] / self.config.batch_size} at "
                f"step {self.step + bad + 1}; stopped without saving. "
                f"{self._keep_message()} Try a lower --learning_rate (now "
                f"{self.config.learning_rate:g}) or --kl_warmup_steps.")

    def _after_steps(self, signals) -> bool:
        """Logs, evaluates, checkpoints and answers signals after a call;
        returns whether the epoch stops here (early stopping)."""
        config, step = self.config, self.step
        if step % config.log_every == 0 or step == self.total_steps:
            self.files.training_scalars(step, {
                **self.log_window.means(),
                "beta": step_lib.kl_weight(config, step - 1),
                "learning_rate": step_lib.learning_rate(self.optimizer),
                "examples_per_sec": self.throughput.recent})
            self.log_window = _Mean(self.term_names)
        stop = False
        if self._evaluates(step):
            self.progress.end_line()
            self.evaluate()
            self.progress.evaluated(step)
            stop = self.selection.stop
            if stop:
                logging.info("Stopping early: the held-out %s has not improved "
                             "for %d evaluations (best %.4f at step %d).",
                             self.selection.metric,
                             config.early_stopping_patience,
                             self.selection.best_value, self.selection.best_step)
        elif config.checkpoint_every and step % config.checkpoint_every == 0:
            self.save_checkpoint()
        if signals.signum is not None:
            self.progress.end_line()
            self.save_checkpoint()
            raise progress_lib.Interrupted(signals.signum, step, self.model_dir)
        return stop

    def _evaluates(self, step: int) -> bool:
        """Whether `step` ends with an evaluation (--eval_every, else every
        epoch)."""
        return step % (self.config.eval_every or self.steps_per_epoch) == 0

    # ------------------------------------------------------------------ #
    # Checkpoints and evaluations.

    def save_checkpoint(self) -> None:
        """Saves the step's checkpoint (once), if every weight is finite;
        the run's flags follow the first checkpoint of the session."""
        if self.saved_step == self.step:
            return
        if not bool(self._weights_finite()):
            raise TrainingDiverged(
                f"the weights became NaN or infinite by step {self.step}; "
                f"stopped without saving. {self._keep_message()}")
        self.step_var.assign(self.step)
        self.elapsed_var.assign(self.elapsed())
        self._save(self.manager, "checkpoint")
        self.saved_step = self.step
        if not self.flags_written:
            self.files.write_flags(self.config)
            self.flags_written = True

    def elapsed(self) -> float:
        """Training seconds over all sessions until now."""
        return self.previous_elapsed + time.monotonic() - self.session_start

    def _save(self, manager: tf.train.CheckpointManager, what: str) -> None:
        """Saves the step's checkpoint with `manager`; a save that fails for
        lack of space or permission removes what it wrote and raises
        `StorageError` naming the last good checkpoint."""
        directory = manager.directory
        before = set(os.listdir(directory)) if os.path.isdir(directory) else set()
        try:
            manager.save(checkpoint_number=self.step)
        except (OSError, tf.errors.OpError) as e:
            problem = run_dir.storage_problem(e)
            if problem is None:
                raise
            _remove_partial_save(directory, self.step, before)
            self.progress.end_line()
            raise _storage_error(problem,
                                 f"saving {what} {self.step} in {directory}",
                                 self.model_dir, self.saved_step) from None

    @tf.function
    def _weights_finite(self):
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                              for v in self.model.variables])

    def _keep_message(self) -> str:
        if self.saved_step is None:
            return "No checkpoint had been saved yet."
        return (f"The last good checkpoint (step {self.saved_step}) is kept in "
                f"{run_dir.checkpoint_dir(self.model_dir)}.")

    def evaluate(self) -> None:
        """Evaluates on the held-out split, checkpoints, keeps the best
        model, and records the evaluation (history, TensorBoard)."""
        config, step = self.config, self.step
        results = self.evaluator(*inputs.eval_arrays(self.dataset))
        self.save_checkpoint()
        if self.selection.update(step, results):
            self._save(self.best_manager, "the best checkpoint")
        train_means = self.eval_window.means()
        self.eval_window = _Mean(self.term_names)
        if not self.chief:
            return
        self.last_eval = {
            "step": step, "epoch": step / self.steps_per_epoch,
            "elapsed": self.elapsed(),
            "wall_time": time.time(),
            **{f"train_{k}": v for k, v in train_means.items()},
            **{f"eval_{k}": v for k, v in results.items()},
            "eval_k": config.eval_k,
            "beta": step_lib.kl_weight(config, max(step - 1, 0)),
            "learning_rate": step_lib.learning_rate(self.optimizer),
            "examples_per_sec": self.throughput.recent}
        self.files.evaluation(self.last_eval, results, self.model,
                              self.dataset, config.seed)
        # The model's own scores (e.g. M2's classification_error) follow.
        scores = "".join(f", {k} {v:.4f}" for k, v in results.items()
                         if k not in ("elbo", "rate", "distortion", "iwae")
                         and not k.startswith("rate_layer"))
        logging.info("Evaluation at step %d (%s split): elbo %.4f, rate %.4f, "
                     "distortion %.4f%s%s.", step, self.dataset.eval_split,
                     results["elbo"], results["rate"], results["distortion"],
                     "" if results["iwae"] is None else
                     f", IWAE_{config.eval_k} {results['iwae']:.4f}", scores)

    def finish(self) -> None:
        """The final evaluation (unless the last step had one) and checkpoint."""
        if self.last_eval is None or self.last_eval["step"] != self.step:
            self.evaluate()
        self.save_checkpoint()

    def close(self) -> None:
        self.files.close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def write_metrics(self) -> dict:
        """metrics.json: the final evaluation and the facts of the run."""
        if not self.chief:
            return {}
        dataset, selection = self.dataset, self.selection
        metrics = {
            "step": self.step, "epoch": self.step / self.steps_per_epoch,
            "examples_per_sec": (self.throughput.overall
                                 or _previous_throughput(self.model_dir)),
            **{k: v for k, v in self.last_eval.items()
               if k.startswith("eval_")},
            "eval_split": dataset.eval_split, "kl": self.kl,
            "best_step": selection.best_step,
            f"best_eval_{selection.metric}": selection.best_value,
            "stopped_early": selection.stop,
            "dataset": {"name": dataset.name,
                        "data_shape": list(dataset.data_shape),
                        "kind": dataset.kind, "binarize": dataset.binarize,
                        "sizes": {k: len(v) for k, v in dataset.splits.items()}},
            "config": self.config.to_dict(),
            "model_config": self.model.get_config(),
        }
        self.files.metrics(metrics)
        speed = metrics["examples_per_sec"]
        logging.info("Done: step %d, eval elbo %.4f, %s; results in %s.",
                     self.step, metrics["eval_elbo"],
                     "too few steps to measure examples/s" if speed is None
                     else f"{speed:,.0f} examples/s", self.model_dir)
        return metrics


def _remove_partial_save(directory: str, step: int, before: set) -> None:
    """Removes what a failed save of checkpoint `step` wrote in `directory`
    (files that were not there before it, and its temporary folder)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if name == f"ckpt-{step}_temp":
                shutil.rmtree(path)
            elif name.startswith(f"ckpt-{step}.") and name not in before:
                os.remove(path)
        except OSError:
            pass  # A read-only directory: the next session ignores it.


def _written(error: Exception, model_dir: str) -> str:
    """The file a failed write was writing, if the error names one in
    `model_dir`, else `model_dir`."""
    filename = getattr(error, "filename", None)
    if filename:
        return os.fspath(filename)
    match = re.search(re.escape(model_dir) + r"[^\s;'\"]*", str(error))
    return match.group(0) if match else model_dir


def _storage_error(problem: str, doing: str, model_dir: str,
                   step: int | None) -> run_dir.StorageError:
    """One line: what failed, the last good checkpoint (`step`, else the
    newest on disk) and what to do."""
    if step is None:
        saved = run_dir.list_checkpoints(run_dir.checkpoint_dir(model_dir))
        step = run_dir.checkpoint_number(saved[0]) if saved else None
    last = ("no checkpoint has been saved yet" if step is None else
            f"the last good checkpoint is {step} (ckpt-{step} in "
            f"{run_dir.checkpoint_dir(model_dir)})")
    fix = ("free some space" if "space" in problem or "quota" in problem
           else f"make {model_dir} writable (or choose another --model_dir)")
    return run_dir.StorageError(
        f"{problem} while {doing}; {last}. To go on, {fix} and run the same "
        f"command again.")


def _previous_throughput(model_dir: str) -> float | None:
    path = run_dir.path(model_dir, run_dir.METRICS_FILE)
    if not os.path.exists(path):
        return None
    return run_dir.read_json(path).get("examples_per_sec")
