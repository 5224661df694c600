"""Scores of a trained model on held-out data: `python -m tfpvae.evaluate`.

    python -m tfpvae.evaluate --model_dir=runs/mnist --k=5000 [--split=valid]

writes `<model_dir>/evaluation.json` and prints the scores as a table:
the negative log-likelihood estimated with k importance samples
(`nll_nats`, its standard error, `bits_per_dim`), the ELBO with its rate
and distortion (the rate with the run's --kl, as during training), the
active units, and the model's own scores. The numbers come from
`tfpvae.evaluation.Evaluator`, the evaluator of training: with the same k,
draws and seed both give the same numbers. The data are those of the
training run (its flags.json, through `tfpvae.inputs.load_data`), or
`--dataset`.

    python -m tfpvae.evaluate --model_dir=runs/sprites --disentanglement

also scores how well the representation, the posterior mean of the top
latent layer (`model.posterior_mean`), separates the dataset's known
factors of variation (`tfpvae.disentanglement.all_scores`, under
"disentanglement" in evaluation.json): MIG, SAP and DCI on the codes of the
evaluated split, 10,000 training and 5,000 test points by default as in
disentanglement_lib [2] (all of the split when it is smaller, which the
output says), and the beta-VAE and FactorVAE scores on data drawn from the
dataset's ground truth (`tfpvae.data.factor_sampler`) with their defaults
(10,000 training and 5,000 evaluation points of 64 observations). The data
must have factor labels: --dataset=sprites (generated offline), dsprites or
shapes3d.

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
[2] Locatello, F. et al. Challenging common assumptions in the unsupervised
    learning of disentangled representations. ICML 2019.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from tfpvae import config as config_lib
from tfpvae import data as data_lib
from tfpvae import disentanglement
from tfpvae import inputs
from tfpvae import run_dir
from tfpvae.evaluation import ACTIVE_UNIT_THRESHOLD  # pylint: disable=unused-import
from tfpvae.evaluation import Evaluator
from tfpvae.evaluation import posterior_mean_variances  # pylint: disable=unused-import

#: File the command line writes in the model directory.
EVALUATION_FILE = run_dir.EVALUATION_FILE
SPLITS = ("valid", "test", "train")


def evaluate(model, x: np.ndarray, k: int = 5000, seed: int = 0,
             batch_size: int = 100, *, elbo_samples: int = 100,
             log_every_seconds: float = 30.0, kl: str = "auto",
             labels: np.ndarray | None = None) -> dict:
    """Estimates the negative log-likelihood, ELBO and active units of `x`.

    Args:
        model: The model (a `tfpvae.models.LatentVariableModel`).
        x: Data `[N, *data_shape]`.
        k: Importance samples per example for log p(x).
        seed: Seed of every draw (per-batch stateless seeds).
        batch_size: Examples per batch.
        elbo_samples: Posterior draws per example for the distortion (and the
            Monte Carlo rate when there is no closed form).
        log_every_seconds: Interval of the progress log lines.
        kl: The rate's estimator: "analytic", "mc" or "auto" (closed form
            where the model has one).
        labels: The labels of x, for a conditional model.

    Returns:
        `Evaluator.report`: `nll_nats` (mean -log p(x)), `nll_nats_stderr`
        (its standard error over examples), `bits_per_dim`, `elbo`, `rate`,
        `distortion` (means over examples, nats), `active_units`,
        `posterior_mean_variances` (per latent unit), `kl`, `k`,
        `elbo_samples`, `num_examples`, `num_dims`, `latent_dim`, `seed`,
        `batch_size` and `seconds`.

    Raises:
        ValueError: For empty data or non-positive sizes.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    evaluator = Evaluator(model, kl=kl, k=k, batch_size=batch_size, seed=seed,
                          elbo_samples=elbo_samples, active_units=True)
    return evaluator.report(np.asarray(x, np.float32), labels,
                            log_every_seconds=log_every_seconds)


def disentanglement_scores(model, x: np.ndarray, factors: np.ndarray,
                           sampler, *, num_train: int = disentanglement.NUM_TRAIN,
                           num_test: int = disentanglement.NUM_TEST,
                           sampled_batch_size: int = disentanglement.SAMPLED_BATCH_SIZE,
                           batch_size: int = 100, seed: int = 0) -> dict:
    """Every disentanglement metric of the model's representation.

    The representation is the posterior mean of the top latent layer,
    `model.posterior_mean(x)`, computed in batches; the scores are
    `tfpvae.disentanglement.all_scores` of it.

    Args:
        model: The model (a `tfpvae.models.LatentVariableModel`).
        x: Examples `[N, *data_shape]` of the evaluated split.
        factors: Their integer factors `[N, K]`.
        sampler: The dataset's ground truth (`tfpvae.data.factor_sampler`).
        num_train, num_test: Training and test points of every score.
        sampled_batch_size: Observations per beta-VAE point or FactorVAE
            vote.
        batch_size: Examples per call of the model.
        seed: Seed of the point selection, the sampled data and the
            classifiers.

    Returns:
        `all_scores`' dict, with `seconds`.
    """
    start = time.perf_counter()
    results = disentanglement.all_scores(
        posterior_means(model, batch_size), x, factors, sampler,
        num_train=num_train, num_test=num_test, batch_size=sampled_batch_size,
        seed=seed)
    results["seconds"] = time.perf_counter() - start
    return results


def posterior_means(model, batch_size: int):
    """`x [n, *data_shape] -> posterior means [n, latent_dim]` (numpy), one
    compiled call per `batch_size` examples."""
    mean = tf.function(model.posterior_mean, input_signature=[
        tf.TensorSpec([None, *model.data_shape], tf.float32)])

    def represent(x: np.ndarray) -> np.ndarray:
        return np.concatenate([
            mean(tf.constant(x[i:i + batch_size], tf.float32)).numpy()
            for i in range(0, len(x), batch_size)])
    return represent


def format_table(results: dict) -> str:
    """The scalar results as a two-column text table; the scalars of a
    nested dict (e.g. "disentanglement") are rows "<dict>.<key>"."""
    rows = []
    for key, value in results.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", v) for k, v in value.items()
                     if not isinstance(v, (list, dict)) and v is not None]
        elif not isinstance(value, list):
            rows.append((key, value))
    width = max(len(key) for key, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    for key, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The training run's data.

def load_run_dataset(model_dir: str, dataset: str | None = None) -> data_lib.Dataset:
    """Loads the data of a training run exactly as the trainer did.

    The data settings (source, binarization, digit subset, validation
    fraction, label column, standardisation, seed, tfds data dir) come from
    `<model_dir>/flags.json` and go through `tfpvae.inputs.load_data`;
    `dataset` overrides the source. Without flags.json, `dataset` is loaded
    with the trainer's defaults for the model's likelihood.

    Raises:
        FileNotFoundError: Without flags.json and without `dataset`.
        ValueError: If flags.json holds invalid settings.
        data_lib.DatasetError: If the data cannot be loaded.
    """
    config = run_config(model_dir, dataset)
    return inputs.load_data(config)


def run_config(model_dir: str, dataset: str | None = None) -> config_lib.TrainConfig:
    """The `TrainConfig` of a training run (its flags.json), with `dataset`
    as the source when given; without flags.json, the defaults with the
    model's likelihood (then `dataset` is required)."""
    if dataset is not None and not os.path.exists(
            run_dir.path(model_dir, run_dir.FLAGS_JSON_FILE)):
        # --binarize=auto needs the likelihood; the rest keeps its defaults.
        saved = run_dir.read_model_config(model_dir)
        return config_lib.TrainConfig(dataset=dataset).replace(
            likelihood=saved.get("likelihood", config_lib.TrainConfig.likelihood))
    settings = run_dir.read_flags(model_dir)
    fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    config = config_lib.TrainConfig(
        **{key: value for key, value in settings.items() if key in fields})
    if dataset is not None:
        config = config.replace(dataset=dataset)
    return config


def split_data(ds: data_lib.Dataset, split: str | None, seed: int = 0) -> tuple[str, np.ndarray]:
    """Returns (split name, examples) of `ds` to evaluate.

    Under dynamic binarization the train split holds intensities; it is
    binarized once here with `seed`, as the held-out splits were at loading.

    Raises:
        ValueError: If the dataset has no such split.
    """
    split = split or ds.eval_split
    if split not in ds.splits:
        raise ValueError(f"The dataset {ds.name!r} has no {split!r} split; it has "
                         f"{sorted(ds.splits)}.")
    x = ds.splits[split]
    if ds.binarize == "dynamic" and split == "train":
        logging.info("Binarizing the train split once (seed %d).", seed)
        x = (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)
    return split, x


# --------------------------------------------------------------------------
# Command line.

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the command-line flags (only when run as a program)."""
    flags.DEFINE_string("model_dir", None, "Directory of a trained model.",
                        flag_values=flag_values)
    flags.DEFINE_integer("k", 5000, "Importance samples per example for log p(x).",
                         flag_values=flag_values)
    flags.DEFINE_enum("split", None, list(SPLITS),
                      "Split to evaluate (default: the dataset's eval split, "
                      "'valid').", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 100, "Examples per batch.",
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of all random draws.",
                         flag_values=flag_values)
    flags.DEFINE_integer("max_examples", None,
                         "Evaluate only the first this many examples.",
                         flag_values=flag_values)
    flags.DEFINE_integer("elbo_samples", 100,
                         "Posterior draws per example for the ELBO terms.",
                         flag_values=flag_values)
    flags.DEFINE_string("dataset", None,
                        "Data source overriding the one in flags.json.",
                        flag_values=flag_values)
    flags.DEFINE_boolean("best", False,
                         "Evaluate the checkpoint with the best held-out bound "
                         "(<model_dir>/best) instead of the latest one.",
                         flag_values=flag_values)
    flags.DEFINE_boolean(
        "disentanglement", False,
        "Also score how well the posterior means separate the data's factors "
        "of variation: MIG, SAP and DCI on the evaluated split, beta-VAE and "
        "FactorVAE on data drawn from the dataset's ground truth. Needs a "
        f"dataset with factor labels: {data_lib.FACTOR_SOURCES_HINT}.",
        flag_values=flag_values)
    flags.DEFINE_integer(
        "disentanglement_train_points", disentanglement.NUM_TRAIN,
        "With --disentanglement: training points of every score (codes of "
        "the split for MIG, SAP, DCI; beta-VAE points, FactorVAE votes and "
        "FactorVAE's variance estimate). disentanglement_lib's 10,000.",
        lower_bound=2, flag_values=flag_values)
    flags.DEFINE_integer(
        "disentanglement_test_points", disentanglement.NUM_TEST,
        "With --disentanglement: test points of every score (held-out codes "
        "for SAP and DCI, beta-VAE and FactorVAE evaluation points). "
        "disentanglement_lib's 5,000. A split with fewer than train + test "
        "points is used in full, in the same proportion.",
        lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer(
        "disentanglement_batch_size", disentanglement.SAMPLED_BATCH_SIZE,
        "With --disentanglement: observations per beta-VAE point and per "
        "FactorVAE vote (disentanglement_lib's 64).", lower_bound=2,
        flag_values=flag_values)


def run(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Evaluates the model of `--model_dir` and writes evaluation.json.

    Returns:
        The results, as written.

    Raises:
        FileNotFoundError, ValueError, data_lib.DatasetError: For a missing
            model directory, bad flags or data that cannot be loaded.
    """
    model_dir = flag_values.model_dir
    if not model_dir:
        raise ValueError("--model_dir is required.")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(run_dir.missing_model_dir(model_dir))
    if flag_values.max_examples is not None and flag_values.max_examples < 1:
        raise ValueError(f"--max_examples must be >= 1; got "
                         f"{flag_values.max_examples}.")
    # The newest intact checkpoint (a damaged one is skipped with a warning).
    checkpoint = run_dir.find_checkpoint(
        run_dir.best_checkpoint_dir(model_dir) if flag_values.best
        else run_dir.checkpoint_dir(model_dir),
        fallback=(run_dir.checkpoint_dir(model_dir) if flag_values.best
                  else None))
    model = run_dir.load(model_dir, checkpoint, best=flag_values.best)
    config = run_config(model_dir, flag_values.dataset)
    ds = inputs.load_data(config)
    sampler = _factor_sampler(ds) if flag_values.disentanglement else None
    split, x = split_data(ds, flag_values.split, flag_values.seed)
    labels = ds.labels.get(split)
    x = x[:flag_values.max_examples]
    labels = None if labels is None else labels[:flag_values.max_examples]
    inputs.check_data(model, data_lib.Dataset(
        ds.name, {split: x}, {split: labels}, ds.data_shape, ds.kind))
    logging.info("Evaluating %s on %d %s examples of %s with k=%d.", checkpoint,
                 len(x), split, ds.name, flag_values.k)
    results = evaluate(model, x, k=flag_values.k, seed=flag_values.seed,
                       batch_size=flag_values.batch_size,
                       elbo_samples=flag_values.elbo_samples, kl=config.kl,
                       labels=labels if model.num_classes else None)
    results.update(split=split, checkpoint=checkpoint, dataset=ds.name)
    if sampler is not None:
        logging.info("Scoring the disentanglement of the posterior means on %s.",
                     ds.name)
        scores = disentanglement_scores(
            model, x, ds.factors[split][:flag_values.max_examples], sampler,
            num_train=flag_values.disentanglement_train_points,
            num_test=flag_values.disentanglement_test_points,
            sampled_batch_size=flag_values.disentanglement_batch_size,
            batch_size=flag_values.batch_size, seed=flag_values.seed)
        if scores["note"]:
            scores["note"] = f"the {split} split has {scores['note']}"
            logging.info("Disentanglement: %s.", scores["note"])
        results["disentanglement"] = dict(scores, factor_names=list(ds.factor_names))
    run_dir.write_json_atomic(run_dir.path(model_dir, EVALUATION_FILE), results)
    return results


def _factor_sampler(ds: data_lib.Dataset):
    """The ground truth for --disentanglement, refusing data without
    factors in one line (before the long evaluation)."""
    if not ds.has_factors:
        raise ValueError(f"--disentanglement needs data with factor labels, and "
                         f"{ds.name} has none; use {data_lib.FACTOR_SOURCES_HINT}.")
    return data_lib.factor_sampler(ds)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    with run_dir.one_line_errors(
            "tfpvae.evaluate", f"{EVALUATION_FILE} is written only when an "
            "evaluation ends, so it is as it was."):
        results = run()
    print(format_table(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
