"""The evaluator: bounds and scores of a model on held-out data.

One `Evaluator` serves the evaluations during training and `python -m
tfpvae.evaluate`; with the same model, data, settings and seed both give
the same numbers. For each example x of the evaluated data it estimates:

* log p(x) by the importance-weighted bound with k samples [1],
  log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x)
  (`LatentVariableModel.log_likelihood`, chunked in memory), when k > 0;
* the ELBO = -(rate + distortion) with the true posterior (noise std 1) and
  beta = 1: the rate KL(q(z|x) || p(z)) in closed form (kl="analytic") or
  as a Monte Carlo estimate (kl="mc"), per latent layer, and the distortion
  -E_q log p(x|z), averaged over `elbo_samples` posterior draws;
* optionally the posterior means of every latent layer
  (`layer_means`): a latent unit u is *active* when Cov_x(E_q[u|x]) > 0.01
  over the data [1]; inactive units carry no information about x. With
  several layers the rate and the active units are also given per layer;
* the model's own scores (`evaluation_metrics`, e.g. M2's classification
  error).

Batch b draws with the stateless seed fold_in((seed, 2), b): the ELBO's
first chunk of draws and the IWAE bound use it, a further chunk i of ELBO
draws fold_in(it, i). The data are processed in batches, so memory stays
bounded for any split size and k.

    negative log-likelihood  nll_nats = -mean log p(x)
    bits_per_dim             = nll_nats / (num_dims * ln 2)

#### References
[1] Burda, Y., Grosse, R. and Salakhutdinov, R. Importance weighted
    autoencoders. ICLR 2016.
"""

from __future__ import annotations

import math
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfpvae import objectives

#: Posterior-mean variance above which a latent unit counts as active [1].
ACTIVE_UNIT_THRESHOLD = 0.01

#: Seed stream of the evaluation: fold (seed, stream), then the batch index.
EVAL_STREAM = 2


def posterior_mean_variances(means: np.ndarray) -> np.ndarray:
    """`[latent_dim]` variances over the data of posterior means `[N, latent_dim]`."""
    return np.var(np.asarray(means, np.float64), axis=0)


def resolve_kl(kl: str, model) -> str:
    """The KL estimator: `kl`, with "auto" resolved (analytic when the model
    has a closed form, else mc)."""
    if kl == "auto":
        return "analytic" if model.has_analytic_kl else "mc"
    return kl


class Evaluator:
    """Bounds and scores of a model on data, per example and averaged.

    Args:
        model: A `tfpvae.models.LatentVariableModel`.
        kl: "analytic", "mc" or "auto" (`resolve_kl`).
        k: Importance samples of the IWAE bound on log p(x); 0 skips it.
        batch_size: Examples per batch.
        seed: Seed of every draw.
        elbo_samples: Posterior draws per example for the ELBO terms.
        active_units: Also collect the posterior means (active units).
    """

    def __init__(self, model, *, kl: str = "auto", k: int, batch_size: int,
                 seed: int = 0, elbo_samples: int = 1,
                 active_units: bool = False):
        for name, value, low in (("k", k, 0), ("batch_size", batch_size, 1),
                                 ("elbo_samples", elbo_samples, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}; got {value}.")
        self.model, self.k, self.batch_size = model, k, batch_size
        self.kl = resolve_kl(kl, model)
        self.seed, self.elbo_samples = seed, elbo_samples
        self.active_units = active_units
        self._seed = tf.constant([seed, EVAL_STREAM], tf.int64)
        self._chunk = max(1, min(elbo_samples, objectives.CHUNK_BUDGET // (
            batch_size * max(model.output_size, 1))))
        self._elbo_terms = tf.function(self._elbo_terms_fn)

    def _elbo_terms_fn(self, x, labels, n, seed):
        terms = self.model.evaluation_elbo(x, self.kl, n, seed, labels=labels)
        return terms.distortion, tf.stack(terms.layer_rates, axis=-1)

    def _batch(self, x, labels, b: int) -> dict:
        """Per-example arrays of one batch; `labels` (or None) go to the
        bounds of a model that conditions on them, and to its metrics."""
        seed = tf.random.experimental.stateless_fold_in(self._seed, b)
        metric_labels = labels
        if not self.model.conditions_on_labels:
            labels = None
        distortion, rates = 0.0, 0.0
        for i, lo in enumerate(range(0, self.elbo_samples, self._chunk)):
            n = min(self._chunk, self.elbo_samples - lo)
            chunk_seed = (seed if i == 0 else
                          tf.random.experimental.stateless_fold_in(seed, i))
            d, r = self._elbo_terms(x, labels, n, chunk_seed)
            distortion += d.numpy().astype(np.float64) * n / self.elbo_samples
            rates += r.numpy().astype(np.float64) * n / self.elbo_samples
        out = {"distortion": distortion, "layer_rates": rates}
        if self.k:
            out["log_px"] = self.model.log_likelihood(
                x, k=self.k, seed=seed, labels=labels).numpy().astype(np.float64)
        if self.active_units:
            out["means"] = np.concatenate(
                [m.numpy() for m in self.model.layer_means(x, labels)], axis=-1)
        for name, values in self.model.evaluation_metrics(
                x, metric_labels).items():
            out[name] = np.asarray(values, np.float64)
        return out

    def per_example(self, x: np.ndarray, labels: np.ndarray | None = None,
                    log_every_seconds: float | None = None) -> dict:
        """Every per-example array of `x` [N, *data_shape] (and its labels
        for a conditional model): distortion [N], layer_rates [N, L],
        log_px [N] (k > 0), means [N, latent_dim] (active_units), and the
        model's evaluation metrics."""
        n = len(x)
        if n == 0:
            raise ValueError("No examples to evaluate.")
        parts, start, last_log = [], time.perf_counter(), time.perf_counter()
        for b, lo in enumerate(range(0, n, self.batch_size)):
            xb = tf.constant(np.asarray(x[lo:lo + self.batch_size], np.float32))
            lb = (None if labels is None or not self.model.num_classes
                  else tf.constant(labels[lo:lo + self.batch_size], tf.int32))
            parts.append(self._batch(xb, lb, b))
            now, done = time.perf_counter(), lo + len(xb)
            if log_every_seconds is not None and (
                    now - last_log >= log_every_seconds or done == n):
                last_log = now
                speed = done / (now - start)
                logging.info("Evaluated %d/%d examples (%.0f%%), %.1f "
                             "examples/s, ETA %s", done, n, 100.0 * done / n,
                             speed, _format_seconds((n - done) / speed))
        return {key: np.concatenate([p[key] for p in parts])
                for key in parts[0]}

    def __call__(self, x: np.ndarray, labels: np.ndarray | None = None) -> dict:
        """The means over examples: elbo, rate, distortion, iwae (None when
        k = 0), rate_layer<l> for several layers, and the model's metrics."""
        return self.summarize(self.per_example(x, labels))

    def summarize(self, arrays: dict) -> dict:
        """Means of `per_example`'s arrays (the history's eval_* values)."""
        rate = arrays["layer_rates"].sum(axis=1)
        results = {"elbo": -float(np.mean(rate + arrays["distortion"])),
                   "rate": float(np.mean(rate)),
                   "distortion": float(np.mean(arrays["distortion"])),
                   "iwae": (float(np.mean(arrays["log_px"]))
                            if "log_px" in arrays else None)}
        if arrays["layer_rates"].shape[1] > 1:
            for layer, values in enumerate(arrays["layer_rates"].T, start=1):
                results[f"rate_layer{layer}"] = float(np.mean(values))
        for key, values in arrays.items():
            if key not in ("distortion", "layer_rates", "log_px", "means"):
                results[key] = float(np.mean(values))
        return results

    def report(self, x: np.ndarray, labels: np.ndarray | None = None, *,
               log_every_seconds: float = 30.0) -> dict:
        """The full report of `python -m tfpvae.evaluate` (needs k > 0).

        Returns:
            A JSON-serialisable dict: `nll_nats` (mean -log p(x)),
            `nll_nats_stderr` (its standard error over examples),
            `bits_per_dim`, `elbo`, `rate`, `distortion` (means over
            examples, nats), `active_units` and `posterior_mean_variances`
            (with active_units=True), per-layer rates for several layers,
            the model's metrics, `kl`, `k`, `elbo_samples`, `num_examples`,
            `num_dims`, `latent_dim`, `seed`, `batch_size` and `seconds`.
        """
        start = time.perf_counter()
        arrays = self.per_example(x, labels, log_every_seconds)
        log_px, n = arrays["log_px"], len(x)
        summary = self.summarize(arrays)
        nll = -summary.pop("iwae")
        num_dims = math.prod(self.model.data_shape)
        results = dict(
            nll_nats=nll,
            nll_nats_stderr=(float(np.std(log_px, ddof=1) / math.sqrt(n))
                             if n > 1 else 0.0),
            bits_per_dim=nll / (num_dims * math.log(2.0)), **summary)
        if "means" in arrays:
            variances = posterior_mean_variances(arrays["means"])
            active = variances > ACTIVE_UNIT_THRESHOLD
            results.update(active_units=int(np.sum(active)),
                           posterior_mean_variances=[float(v) for v in variances])
            sizes = self.model.latent_sizes
            if len(sizes) > 1:
                for layer, units in enumerate(
                        np.split(active, np.cumsum(sizes)[:-1]), start=1):
                    results[f"active_units_layer{layer}"] = int(np.sum(units))
        results.update(
            kl=self.kl, k=int(self.k), elbo_samples=int(self.elbo_samples),
            num_examples=n, num_dims=num_dims,
            latent_dim=self.model.latent_dim, seed=int(self.seed),
            batch_size=int(self.batch_size),
            seconds=time.perf_counter() - start)
        return results


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
