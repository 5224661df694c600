"""Encoder-gradient variance of the IWAE bound: the plain reparameterised
gradient against DReG (Tucker et al., 2019; --gradient_estimator=dreg).

    python tools/gradient_variance.py \\
        --output=docs/benchmarks/gradient_variance_2026-12-01.json
    python tools/gradient_variance.py --model_dir=runs/my_iwae_run \\
        --k=1,5,50,500 --draws=500 --batch=100 --nountrained

For a run directory written by `python -m tfpvae.main` (a VAE with one
latent layer and a diagonal Gaussian posterior) it takes the first `--batch`
images of the run's held-out split, loaded as the trainer loaded them, and
for every k of `--k` computes, at `--draws` independent noise seeds, the
gradient of the training loss -mean_x IWAE_k(x) under both estimators,
`gradient_estimator="standard"` and `"dreg"`, at the same seed. It does so
for the trained model (the run's latest intact checkpoint) and, with
`--untrained`, for the same architecture at a fresh initialisation
(`tfpvae.models.from_config` of the run's model_config.json, seeded by
`--seed`). Per model, k and estimator it reports, over the encoder's
trainable variables (`model.encoder.trainable_variables`):

* var: the total variance, the sum over encoder parameters of each
  parameter's variance over the draws; and ratio = var(standard) /
  var(dreg).
* SNR: the gradient signal-to-noise ratio |mean| / std of each parameter
  over the draws (Rainforth et al., 2018), averaged over the parameters
  whose std is nonzero (the median is in the JSON). Rainforth et al. show
  that the standard estimator's SNR for the encoder falls as k grows
  (as 1/sqrt(k)), while DReG's does not.
* z2: the unbiasedness check. Both estimators have the same expectation;
  per parameter z = mean(d) / (std(d) / sqrt(draws)) with d the
  difference of the two gradients drawn at the same seed (a paired test),
  and z2 = mean z^2 over the parameters, about 1 (precisely
  (draws - 1) / (draws - 3) for Gaussian d) when they agree. The JSON also
  has the share of |z| > 4 and the unpaired z^2 of tests/test_gradients.py
  (which treats the two sets of draws as independent, so it falls below 1
  when they are positively correlated).
* decoder: the largest |difference| between the two estimators' gradients
  of the other trainable variables (the decoder's, and the prior's or the
  likelihood's if they have any) at the same seed, over all draws. DReG
  changes only the encoder's gradient, so it should be rounding error;
  `--check_decoder` makes a larger one an error.

The loss is `-mean(model.iwae(x, k, seed=..., gradient_estimator=...)
.objective)` with the bound's beta = `--beta` (1: the IWAE bound itself,
whatever KL warm-up the run was trained with); for k > 1 that is
`model.loss(x, k=k, ...)`, the trainer's loss (checked at the first seed).
At k = 1 `model.loss` would be the ELBO with the analytic KL, for which the
trainer has no DReG; the script measures IWAE_1 instead, the ELBO with a
Monte Carlo KL, whose DReG gradient is the "sticking the landing"
estimator of Roeder et al. (2017).

The gradients are computed in a `tf.function`, one per model and k, both
estimators in one call, and the statistics are accumulated draw by draw
(Welford's algorithm, float64), so memory does not grow with `--draws`.
The JSON (`--output`) records the date, the machine and its load average,
the command, the run and its checkpoint step, and every number.

#### References
Rainforth, T. et al. Tighter variational bounds are not necessarily better.
    ICML 2018.
Roeder, G., Wu, Y. & Duvenaud, D. Sticking the landing: simple,
    lower-variance gradient estimators for variational inference. NeurIPS
    2017.
Tucker, G., Lawson, D., Gu, S. & Maddison, C. J. Doubly reparameterized
    gradient estimators for Monte Carlo objectives. ICLR 2019.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import app
from absl import flags
from absl import logging

import tfpvae
from tfpvae import models
from tfpvae import run_dir
from tfpvae.evaluate import load_run_dataset, run_config
from tfpvae.train.step import kl_weight

ESTIMATORS = ("standard", "dreg")

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the measurement's flags (on absl's FLAGS by default)."""
    flags.DEFINE_string("model_dir", "runs/binarized_mnist_iwae_dreg",
                        "A run directory written by `python -m tfpvae.main` "
                        "(a VAE with one latent layer and a diagonal "
                        "Gaussian posterior).", flag_values=flag_values)
    flags.DEFINE_bool("trained", True, "Measure the trained model (the "
                      "run's latest intact checkpoint).",
                      flag_values=flag_values)
    flags.DEFINE_bool("untrained", True, "Also measure the same "
                      "architecture at a fresh initialisation (seeded by "
                      "--seed).", flag_values=flag_values)
    flags.DEFINE_list("k", ["1", "10", "50"], "Importance samples k of the "
                      "IWAE bound, one measurement each.",
                      flag_values=flag_values)
    flags.DEFINE_integer("draws", 200, "Independent noise seeds (gradient "
                         "draws) per model, k and estimator.", lower_bound=3,
                         flag_values=flag_values)
    flags.DEFINE_integer("batch", 20, "Images of the held-out split the "
                         "loss averages over (the first ones).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("beta", 1.0, "Weight of log p(z) - log q(z|x) in the "
                       "bound; 1 is IWAE_k.", lower_bound=0.0,
                       flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the noise (draw i uses the "
                         "stateless seed [seed, i]) and of the untrained "
                         "model's initialisation.", flag_values=flag_values)
    flags.DEFINE_bool("check_decoder", False, "Fail if the decoder's "
                      "gradient differs between the estimators at the same "
                      "seed (beyond rtol 1e-4, atol 1e-6 of the largest "
                      "entry); otherwise it is only reported.",
                      flag_values=flag_values)
    flags.DEFINE_string("output", "", "Write the results as JSON to this "
                        "file.", flag_values=flag_values)
    flags.register_validator(
        "k", lambda ks: bool(ks) and all(re.fullmatch(r"[1-9]\d*", k)
                                         for k in ks),
        "--k must be a comma-separated list of positive integers.",
        flag_values=flag_values)


# --------------------------------------------------------------------------
# Streaming statistics.

class Welford:
    """Running mean and variance of vectors (float64), one update a draw."""

    def __init__(self, size: int):
        self.n = 0
        self.mean = np.zeros(size, np.float64)
        self.m2 = np.zeros(size, np.float64)

    def update(self, value: np.ndarray) -> None:
        self.n += 1
        value = value.astype(np.float64)
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    @property
    def var(self) -> np.ndarray:
        """The unbiased (ddof = 1) variance of every entry."""
        return self.m2 / (self.n - 1)


def snr(stats: Welford) -> dict:
    """Mean and median |mean| / std over the entries with nonzero std."""
    std = np.sqrt(stats.var)
    active = std > 0
    ratio = np.abs(stats.mean[active]) / std[active]
    return {"mean": float(ratio.mean()), "median": float(np.median(ratio)),
            "parameters": int(active.sum())}


def z_scores(mean: np.ndarray, var_of_mean: np.ndarray) -> dict:
    """mean z^2 and the share of |z| > 4 of mean / sqrt(var_of_mean)."""
    active = var_of_mean > 0
    z = mean[active] / np.sqrt(var_of_mean[active])
    return {"mean_z2": float(np.mean(z ** 2)),
            "share_abs_z_above_4": float(np.mean(np.abs(z) > 4)),
            "parameters": int(active.sum())}


# --------------------------------------------------------------------------
# The measurement.

def _flatten(grads) -> tf.Tensor:
    return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)


def gradient_function(model, x, k: int, beta: float):
    """A `tf.function` seed [2] -> per estimator (encoder gradient [P],
    other gradients [Q], loss), all at the same seed."""
    encoder = list(model.encoder.trainable_variables)
    refs = {v.ref() for v in encoder}
    others = [v for v in model.trainable_variables if v.ref() not in refs]

    @tf.function
    def gradients(seed):
        out = []
        for estimator in ESTIMATORS:
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(model.iwae(
                    x, k=k, beta=beta, seed=seed,
                    gradient_estimator=estimator).objective)
            grads = tape.gradient(
                loss, encoder + others,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
            out.append((_flatten(grads[:len(encoder)]),
                        _flatten(grads[len(encoder):]), loss))
        return out

    return gradients


def _check_trainer_loss(model, x, k: int, beta: float, seed) -> None:
    """For k > 1 the measured loss is `model.loss`, the trainer's."""
    if k == 1:
        return
    for estimator in ESTIMATORS:
        ours = -tf.reduce_mean(model.iwae(x, k=k, beta=beta, seed=seed,
                                          gradient_estimator=estimator)
                               .objective)
        theirs, _ = model.loss(x, k=k, beta=beta, seed=seed,
                               gradient_estimator=estimator)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5)


def measure(model, x, k: int, draws: int, beta: float, seed: int) -> dict:
    """The statistics of both estimators' gradients over `draws` seeds."""
    encoder_size = sum(int(np.prod(v.shape))
                       for v in model.encoder.trainable_variables)
    _check_trainer_loss(model, x, k, beta, tf.constant([seed, 0]))
    gradients = gradient_function(model, x, k, beta)
    stats = {e: Welford(encoder_size) for e in ESTIMATORS}
    difference = Welford(encoder_size)
    decoder_diff = decoder_scale = loss_diff = 0.0
    decoder_ok = True
    start = None
    for i in range(draws):
        if i == 1:  # after tracing
            start = time.perf_counter()
        (enc_s, dec_s, loss_s), (enc_d, dec_d, loss_d) = [
            tuple(t.numpy() for t in side)
            for side in gradients(tf.constant([seed, i]))]
        stats["standard"].update(enc_s)
        stats["dreg"].update(enc_d)
        difference.update(enc_s.astype(np.float64) - enc_d)
        if dec_s.size:
            gap = np.abs(dec_s - dec_d)
            decoder_diff = max(decoder_diff, float(gap.max()))
            decoder_scale = max(decoder_scale, float(np.abs(dec_s).max()))
            decoder_ok &= bool(gap.max() <= 1e-6 + 1e-4 * np.abs(dec_s).max())
        loss_diff = max(loss_diff, abs(float(loss_s) - float(loss_d)))
    seconds = time.perf_counter() - start if start else 0.0
    total_var = {e: float(stats[e].var.sum()) for e in ESTIMATORS}
    unpaired = z_scores(stats["standard"].mean - stats["dreg"].mean,
                        (stats["standard"].var + stats["dreg"].var) / draws)
    return {
        "k": k, "draws": draws, "encoder_parameters": encoder_size,
        "total_variance": total_var,
        "variance_ratio": total_var["standard"] / total_var["dreg"],
        "snr": {e: snr(stats[e]) for e in ESTIMATORS},
        "mean_gradient_norm": {e: float(np.linalg.norm(stats[e].mean))
                               for e in ESTIMATORS},
        "unbiasedness_paired": z_scores(difference.mean,
                                        difference.var / draws),
        "unbiasedness_unpaired": unpaired,
        "decoder_max_abs_difference": decoder_diff,
        "decoder_max_abs_gradient": decoder_scale,
        "decoder_identical": decoder_ok,
        "loss_max_abs_difference": loss_diff,
        "seconds_per_draw": seconds / max(draws - 1, 1),
    }


# --------------------------------------------------------------------------
# Report.

def machine() -> dict:
    """Host, CPU model, cores and library versions."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"node": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__,
            "threads": {name: os.environ.get(name) for name in
                        ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}}


def checkpoint_step(model_dir: str) -> int | None:
    """The step of the checkpoint `tfpvae.load` takes."""
    path = run_dir.find_checkpoint(run_dir.checkpoint_dir(model_dir))
    return run_dir.checkpoint_number(path) if path else None


def training_beta(model_dir: str, step: int | None) -> float | None:
    """The KL weight the run trained with at `step` (its warm-up)."""
    if step is None:
        return None
    try:
        return kl_weight(run_config(model_dir), step)
    except (OSError, ValueError):
        return None


_HEADER = (f"{'model':8} {'k':>4} {'var standard':>13} {'var dreg':>11} "
           f"{'ratio':>7} {'SNR std':>8} {'SNR dreg':>8} {'z2':>6} "
           f"{'|z|>4':>6} {'decoder max|diff|':>18}")


def row(model: str, r: dict) -> str:
    """One line of the table."""
    u = r["unbiasedness_paired"]
    return (f"{model:8} {r['k']:>4} {r['total_variance']['standard']:>13.4g} "
            f"{r['total_variance']['dreg']:>11.4g} "
            f"{r['variance_ratio']:>7.2f} "
            f"{r['snr']['standard']['mean']:>8.4f} "
            f"{r['snr']['dreg']['mean']:>8.4f} {u['mean_z2']:>6.3f} "
            f"{100 * u['share_abs_z_above_4']:>5.2f}% "
            f"{r['decoder_max_abs_difference']:>10.2g}"
            f"{'' if r['decoder_identical'] else ' (DIFFERS)':>8}")


def format_report(report: dict) -> str:
    """The results as a text table."""
    s = report["settings"]
    lines = [
        f"Encoder-gradient variance of -IWAE_k, standard vs DReG, "
        f"{report['date']}: {report['machine']['cpu']} "
        f"({report['machine']['node']})",
        f"load average (1, 5, 15 min): before "
        f"{', '.join(f'{v:.2f}' for v in report['load_before'])}; after "
        f"{', '.join(f'{v:.2f}' for v in report['load_after'])}",
        f"{s['model_dir']} (checkpoint step {report['checkpoint_step']}), "
        f"{s['batch']} {s['split']} images, {s['draws']} draws, "
        f"beta {s['beta']:g}, {report['encoder_parameters']:,} encoder "
        f"parameters",
        "var: sum over encoder parameters of the variance over draws; ratio: "
        "standard / dreg; SNR: mean |mean|/std; z2: mean squared paired "
        "z-score of the difference (~1 if both are unbiased)",
        _HEADER,
    ]
    for name, results in report["models"].items():
        lines += [row(name, r) for r in results]
    return "\n".join(lines)


def load_models(model_dir: str, trained: bool, untrained: bool,
                seed: int) -> dict:
    """name -> model: "trained" (the run's checkpoint), "initial"."""
    out = {}
    if trained:
        out["trained"] = tfpvae.load(model_dir)
    if untrained:
        tf_keras.utils.set_random_seed(seed)
        out["initial"] = models.from_config(
            run_dir.read_model_config(model_dir))
    return out


def run(command: str) -> dict:
    """Runs the measurements the flags select; returns the report."""
    model_dir = FLAGS.model_dir
    step = checkpoint_step(model_dir) if FLAGS.trained else None
    report = {"command": command, "date": time.strftime("%Y-%m-%d"),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine(), "load_before": list(os.getloadavg()),
              "checkpoint_step": step,
              "training_beta_at_checkpoint": training_beta(model_dir, step)}
    dataset = load_run_dataset(model_dir)
    images = dataset.splits[dataset.eval_split]
    x = tf.constant(images[:FLAGS.batch])
    ks = [int(k) for k in FLAGS.k]
    report["settings"] = {
        "model_dir": model_dir, "dataset": dataset.name,
        "split": dataset.eval_split, "batch": int(x.shape[0]), "k": ks,
        "draws": FLAGS.draws, "beta": FLAGS.beta, "seed": FLAGS.seed,
        "model_config": run_dir.read_model_config(model_dir)}
    report["models"] = {}
    start = time.perf_counter()
    for name, model in load_models(model_dir, FLAGS.trained, FLAGS.untrained,
                                   FLAGS.seed).items():
        report["encoder_parameters"] = sum(
            int(np.prod(v.shape)) for v in model.encoder.trainable_variables)
        results = report["models"][name] = []
        for k in ks:
            logging.info("%s model, k=%d: %d draws ...", name, k, FLAGS.draws)
            results.append(measure(model, x, k, FLAGS.draws, FLAGS.beta,
                                   FLAGS.seed))
            logging.info("%s", row(name, results[-1]))
            if FLAGS.check_decoder and not results[-1]["decoder_identical"]:
                raise AssertionError(
                    f"{name}, k={k}: the decoder's gradient differs between "
                    f"the estimators (max |difference| "
                    f"{results[-1]['decoder_max_abs_difference']:.3g}).")
    report["seconds"] = time.perf_counter() - start
    report["load_after"] = list(os.getloadavg())
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not (FLAGS.trained or FLAGS.untrained):
        raise app.UsageError("--notrained and --nountrained: nothing to "
                             "measure.")
    tf.get_logger().setLevel("ERROR")
    command = " ".join(["python tools/gradient_variance.py", *sys.argv[1:]])
    report = run(command)
    print(format_report(report))
    if FLAGS.output:
        run_dir.write_json_atomic(FLAGS.output, report)
        print(f"\nWrote {FLAGS.output}.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
