"""Scores of a trained VAE on held-out data: log-likelihood, ELBO, active units.

For each example x of the evaluated split:

* log p(x) is estimated by the importance-weighted bound with k samples [1],
  log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (`VAE.log_likelihood`);
  the negative log-likelihood `nll_nats` is its negated mean, and

      bits_per_dim = nll_nats / (num_dims * ln 2),

  num_dims being the number of values per example (784 for MNIST);
* the ELBO = -(rate + distortion), with the rate KL(q(z|x) || p(z)) in
  closed form when the model has one, else a Monte Carlo estimate, and the
  distortion -E_q log p(x|z) averaged over `elbo_samples` posterior draws;
* the posterior mean E_q[z|x]. A latent unit u is *active* when
  Cov_x(E_q[u|x]) > 0.01 over the data [1]: inactive units carry no
  information about x (the posterior equals the prior there).

The data are processed in batches (and the k samples in chunks inside
`VAE.log_likelihood`), so memory stays bounded for any split size and k.
Batch b uses stateless seeds derived from (seed, b): a run is reproducible
for a given seed and batch size.

Command line (data as in the training run's flags.json, or `--dataset`):

    python -m tfpvae.evaluate --model_dir=runs/mnist --k=5000 [--split=valid]

writes `<model_dir>/evaluation.json` and prints the scores as a table.

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from tfpvae import config as config_lib
from tfpvae import data as data_lib
from tfpvae import saving
from tfpvae import train as train_lib
from tfpvae.model import VAE

#: Posterior-mean variance above which a latent unit counts as active [1].
ACTIVE_UNIT_THRESHOLD = 0.01
#: File the command line writes in the model directory.
EVALUATION_FILE = "evaluation.json"
#: File of the training flags in the model directory.
FLAGS_FILE = "flags.json"
SPLITS = ("valid", "test", "train")

# Largest decoder output (elements) of one chunk of ELBO samples.
_ELBO_BUDGET = 2 ** 24


def posterior_mean_variances(means: np.ndarray) -> np.ndarray:
    """`[latent_dim]` variances over the data of posterior means `[N, latent_dim]`."""
    return np.var(np.asarray(means, np.float64), axis=0)


def evaluate(model: VAE, x: np.ndarray, k: int = 5000, seed: int = 0,
             batch_size: int = 100, *, elbo_samples: int = 100,
             log_every_seconds: float = 30.0) -> dict:
    """Estimates the negative log-likelihood, ELBO and active units of `x`.

    Args:
        model: The VAE.
        x: Data `[N, *data_shape]`.
        k: Importance samples per example for log p(x).
        seed: Seed of every draw (per-batch stateless seeds).
        batch_size: Examples per batch.
        elbo_samples: Posterior draws per example for the distortion (and the
            Monte Carlo rate when there is no closed form).
        log_every_seconds: Interval of the progress log lines.

    Returns:
        A JSON-serialisable dict: `nll_nats` (mean -log p(x)),
        `nll_nats_stderr` (its standard error over examples), `bits_per_dim`,
        `elbo`, `rate`, `distortion` (means over examples, nats),
        `active_units`, `posterior_mean_variances` (per latent unit), `kl`
        ("analytic" or "mc"), `k`, `elbo_samples`, `num_examples`,
        `num_dims`, `latent_dim`, `seed`, `batch_size` and `seconds`.

    Raises:
        ValueError: For empty data or non-positive sizes.
    """
    x = np.asarray(x, np.float32)
    n = len(x)
    if n == 0:
        raise ValueError("No examples to evaluate.")
    for name, value in (("k", k), ("batch_size", batch_size),
                        ("elbo_samples", elbo_samples)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}.")
    kl = "analytic" if model.has_analytic_kl else "mc"
    log_px, rate, distortion, means = [], [], [], []
    start = last_log = time.perf_counter()
    for b, lo in enumerate(range(0, n, batch_size)):
        xb = x[lo:lo + batch_size]
        ll_seed, elbo_seed = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in([0, seed], b), 2)
        log_px.append(model.log_likelihood(xb, k=k, seed=ll_seed).numpy())
        rate_b, distortion_b = _elbo_terms(model, xb, kl, elbo_samples, elbo_seed)
        rate.append(rate_b)
        distortion.append(distortion_b)
        means.append(model.posterior_mean(xb).numpy())
        now = time.perf_counter()
        done = lo + len(xb)
        if now - last_log >= log_every_seconds or done == n:
            last_log = now
            speed = done / (now - start)
            logging.info("Evaluated %d/%d examples (%.0f%%), %.1f examples/s, "
                         "ETA %s", done, n, 100.0 * done / n, speed,
                         _format_seconds((n - done) / speed))
    log_px = np.concatenate(log_px).astype(np.float64)
    rate = np.concatenate(rate).astype(np.float64)
    distortion = np.concatenate(distortion).astype(np.float64)
    variances = posterior_mean_variances(np.concatenate(means))
    nll = -float(np.mean(log_px))
    num_dims = math.prod(model.data_shape)
    return dict(
        nll_nats=nll,
        nll_nats_stderr=float(np.std(log_px, ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        bits_per_dim=nll / (num_dims * math.log(2.0)),
        elbo=-float(np.mean(rate + distortion)),
        rate=float(np.mean(rate)),
        distortion=float(np.mean(distortion)),
        active_units=int(np.sum(variances > ACTIVE_UNIT_THRESHOLD)),
        posterior_mean_variances=[float(v) for v in variances],
        kl=kl, k=int(k), elbo_samples=int(elbo_samples), num_examples=n,
        num_dims=num_dims, latent_dim=model.latent_dim, seed=int(seed),
        batch_size=int(batch_size),
        seconds=time.perf_counter() - start)


def _elbo_terms(model: VAE, x: np.ndarray, kl: str, n_samples: int,
                seed: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-example rate and distortion `[B]`, drawing the samples in chunks."""
    per_sample = len(x) * math.prod(model.data_shape) * model.likelihood.num_params
    chunk = max(1, min(n_samples, _ELBO_BUDGET // per_sample))
    rate = distortion = 0.0
    for i, lo in enumerate(range(0, n_samples, chunk)):
        size = min(chunk, n_samples - lo)
        out = model.elbo(x, kl=kl, n_samples=size,
                         seed=tf.random.experimental.stateless_fold_in(seed, i))
        rate += out.rate.numpy() * size / n_samples
        distortion += out.distortion.numpy() * size / n_samples
    return rate, distortion


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def format_table(results: dict) -> str:
    """The scalar results as a two-column text table."""
    rows = [(key, value) for key, value in results.items()
            if not isinstance(value, (list, dict))]
    width = max(len(key) for key, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    for key, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The training run's data.

def read_training_flags(model_dir: str) -> dict:
    """The training flags saved in `<model_dir>/flags.json`.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    path = os.path.join(model_dir, FLAGS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; pass --dataset to name "
                                f"the data.")
    with open(path) as f:
        return json.load(f)


def load_run_dataset(model_dir: str, dataset: str | None = None) -> data_lib.Dataset:
    """Loads the data of a training run exactly as the trainer did.

    The data settings (source, binarization, digit subset, validation
    fraction, label column, standardisation, seed, tfds data dir) come from
    `<model_dir>/flags.json` and go through `tfpvae.train.load_data`;
    `dataset` overrides the source. Without flags.json, `dataset` is loaded
    with the trainer's defaults for the model's likelihood.

    Raises:
        FileNotFoundError: Without flags.json and without `dataset`.
        ValueError: If flags.json holds invalid settings.
        data_lib.DatasetError: If the data cannot be loaded.
    """
    if dataset is not None and not os.path.exists(
            os.path.join(model_dir, FLAGS_FILE)):
        settings = {"likelihood": saving.read_model_config(model_dir)["likelihood"]}
    else:
        settings = read_training_flags(model_dir)
    fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    config = config_lib.TrainConfig(
        **{key: value for key, value in settings.items() if key in fields})
    if dataset is not None:
        config = config.replace(dataset=dataset)
    return train_lib.load_data(config)


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
        raise FileNotFoundError(f"--model_dir={model_dir} does not exist.")
    if flag_values.max_examples is not None and flag_values.max_examples < 1:
        raise ValueError(f"--max_examples must be >= 1; got "
                         f"{flag_values.max_examples}.")
    checkpoint = tf.train.latest_checkpoint(
        saving.best_checkpoint_dir(model_dir) if flag_values.best
        else saving.checkpoint_dir(model_dir))
    model = saving.load(model_dir, checkpoint, best=flag_values.best)
    ds = load_run_dataset(model_dir, flag_values.dataset)
    split, x = split_data(ds, flag_values.split, flag_values.seed)
    x = x[:flag_values.max_examples]
    model.likelihood.check_data(x)
    logging.info("Evaluating %s on %d %s examples of %s with k=%d.", checkpoint,
                 len(x), split, ds.name, flag_values.k)
    results = evaluate(model, x, k=flag_values.k, seed=flag_values.seed,
                       batch_size=flag_values.batch_size,
                       elbo_samples=flag_values.elbo_samples)
    results.update(split=split, checkpoint=checkpoint, dataset=ds.name)
    saving.write_json_atomic(os.path.join(model_dir, EVALUATION_FILE), results)
    return results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        results = run()
    except (FileNotFoundError, ValueError) as e:  # DatasetError is a ValueError.
        sys.exit("tfpvae.evaluate: error: " + " ".join(str(e).split()))
    print(format_table(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
