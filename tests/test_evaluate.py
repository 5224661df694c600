"""tfpvae.evaluate against closed forms, and its command line.

Linear-Gaussian model: z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D), with
orthogonal columns of W scaled by loadings c (one of them 0). Then
p(x) = N(x; b, W W^T + sigma^2 I), the exact posterior is diagonal with
variances s = 1 / (1 + c^2 / sigma^2) and means m = s W^T (x - b) / sigma^2,
and for a Gaussian q = N(mu, diag(v)) the ELBO terms are closed forms:

    rate = 1/2 sum(v + mu^2 - 1 - log v),
    distortion = D/2 log(2 pi sigma^2)
                 + (||x - W mu - b||^2 + sum_j c_j^2 v_j) / (2 sigma^2).

The encoder is the exact posterior with a shifted mean and widened scale, so
ELBO < log p(x) strictly. A latent unit with loading 0 has posterior mean 0
for every x: it is inactive, the other units are active.
"""

import errno
import json
import logging
import math
import os

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from absl import flags

import tfpvae
from tfpvae import evaluate
from tfpvae import run_dir

from conftest import exit_code, linear_gaussian_vae

LOADINGS = np.array([2.0, 1.0, 0.5, 0.0])
LATENT, DIM, SIGMA = len(LOADINGS), 6, 0.5
LOC_SHIFT, SCALE_MULT = 0.2, 1.3


class LinearGaussian:
    """Parameters, data and closed forms (numpy, independent of tfpvae)."""

    def __init__(self, n=200, seed=0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        self.w = q[:, :LATENT] * LOADINGS  # [D, d]
        self.b = rng.normal(size=DIM)
        self.s = 1.0 / (1.0 + LOADINGS ** 2 / SIGMA ** 2)  # Exact posterior var.
        z = rng.normal(size=(n, LATENT))
        self.x = (z @ self.w.T + self.b + SIGMA * rng.normal(size=(n, DIM))
                  ).astype(np.float32)

    def log_px(self):
        cov = self.w @ self.w.T + SIGMA ** 2 * np.eye(DIM)
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(self.x)

    def encoder_moments(self):
        """Mean [N, d] and variance [d] of the (perturbed) encoder."""
        exact_mean = self.s * ((self.x - self.b) @ self.w) / SIGMA ** 2
        return exact_mean + LOC_SHIFT, self.s * SCALE_MULT ** 2

    def elbo_terms(self):
        mu, v = self.encoder_moments()
        rate = 0.5 * np.sum(v + mu ** 2 - 1 - np.log(v), axis=1)
        residual = self.x - mu @ self.w.T - self.b
        distortion = (DIM / 2 * math.log(2 * math.pi * SIGMA ** 2)
                      + (np.sum(residual ** 2, axis=1)
                         + np.sum(LOADINGS ** 2 * v)) / (2 * SIGMA ** 2))
        return rate, distortion


def linear_vae(lg):
    return linear_gaussian_vae(lg.w, lg.b, lg.s, SIGMA, LOC_SHIFT, SCALE_MULT)


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(scope="module")
def results(lg):
    # 64 does not divide 200: the last batch is ragged.
    return evaluate.evaluate(linear_vae(lg), lg.x, k=1000, seed=0,
                             batch_size=64, elbo_samples=200)


def test_nll_matches_the_closed_form_log_likelihood(lg, results):
    log_px = lg.log_px()
    true_nll = -np.mean(log_px)
    # IWAE_1000 is a lower bound on log p(x); bias and Monte Carlo error
    # together are a few 1e-3 nats here (measured over seeds).
    assert results["nll_nats"] == pytest.approx(true_nll, abs=0.02)
    assert results["num_examples"] == 200 and results["k"] == 1000
    assert results["nll_nats_stderr"] == pytest.approx(
        np.std(log_px, ddof=1) / math.sqrt(200), rel=0.05)


def test_bits_per_dim_is_nll_over_dims_times_ln2(results):
    assert results["num_dims"] == DIM
    assert results["bits_per_dim"] == pytest.approx(
        results["nll_nats"] / (DIM * math.log(2)), rel=1e-12)


def test_elbo_terms_match_their_closed_forms(lg, results):
    rate, distortion = lg.elbo_terms()
    assert results["kl"] == "analytic"
    assert results["rate"] == pytest.approx(np.mean(rate), rel=1e-4)
    # The distortion is a mean over 200 x 200 posterior draws.
    assert results["distortion"] == pytest.approx(np.mean(distortion), abs=0.03)
    assert results["elbo"] == pytest.approx(
        -(results["rate"] + results["distortion"]), rel=1e-9)
    gap = -results["nll_nats"] - results["elbo"]
    true_gap = np.mean(lg.log_px()) + np.mean(rate + distortion)
    assert true_gap > 0.3  # The perturbed posterior leaves a real gap ...
    assert gap == pytest.approx(true_gap, abs=0.04)  # ... that is measured.


def test_active_units_are_the_dimensions_with_nonzero_loading(lg, results):
    mu, _ = lg.encoder_moments()
    np.testing.assert_allclose(results["posterior_mean_variances"],
                               np.var(mu, axis=0), rtol=1e-4, atol=1e-10)
    assert results["active_units"] == int(np.sum(LOADINGS != 0)) == 3
    assert results["posterior_mean_variances"][-1] < 1e-10


def test_results_are_determined_by_the_seed(lg):
    model = linear_vae(lg)
    x = lg.x[:50]

    def run(seed):
        out = evaluate.evaluate(model, x, k=20, seed=seed, batch_size=16,
                                elbo_samples=3)
        out.pop("seconds")
        return out

    first = run(seed=3)
    assert run(seed=3) == first
    other = run(seed=4)
    assert other["nll_nats"] != first["nll_nats"]
    assert other["distortion"] != first["distortion"]


def test_monte_carlo_rate_without_a_closed_form(caplog):
    model = tfpvae.VAE(latent_dim=2, data_shape=(5,), likelihood="gaussian",
                       hidden_units=(16,), prior="mixture", mixture_components=3)
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    caplog.set_level(logging.INFO, logger="absl")
    out = evaluate.evaluate(model, x, k=200, seed=0, batch_size=7,
                            elbo_samples=500, log_every_seconds=0.0)
    assert out["kl"] == "mc"
    assert out["rate"] > 0
    # E[ELBO] <= E[IWAE_200], with estimates far tighter than the gap.
    assert out["elbo"] < -out["nll_nats"]
    progress = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("Evaluated")]
    assert len(progress) == 5 and "30/30" in progress[-1] and "ETA" in progress[0]


def test_bad_arguments_are_refused():
    model = tfpvae.VAE(latent_dim=2, data_shape=(3,), likelihood="gaussian",
                       hidden_units=(4,))
    with pytest.raises(ValueError, match="No examples"):
        evaluate.evaluate(model, np.zeros((0, 3), np.float32), k=2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate.evaluate(model, np.zeros((2, 3), np.float32), k=0)


# --------------------------------------------------------------------------
# Command line.

IMAGE = (6, 6)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny saved model, its flags.json and an .npz of binary images."""
    root = tmp_path_factory.mktemp("evaluate_cli")
    rng = np.random.default_rng(0)
    data_path = root / "images.npz"
    np.savez(data_path, train=(rng.random((40,) + IMAGE) < 0.3).astype(np.uint8),
             valid=(rng.random((24,) + IMAGE) < 0.3).astype(np.uint8))
    directory = str(root / "run")
    model = tfpvae.VAE(latent_dim=2, data_shape=IMAGE + (1,), hidden_units=(16,))
    run_dir.save_model_config(model, directory)
    tf.train.CheckpointManager(run_dir.make_checkpoint(model),
                               run_dir.checkpoint_dir(directory), 1).save()
    # Other weights as the "best" checkpoint (selection by validation).
    for v in model.trainable_variables:
        v.assign(v * 0.5)
    tf.train.CheckpointManager(run_dir.make_checkpoint(model),
                               run_dir.best_checkpoint_dir(directory), 1).save()
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump({"dataset": str(data_path), "binarize": "none",
                   "likelihood": "bernoulli", "latent_dim": 2,
                   "hidden_units": [16], "seed": 0}, f)
    return directory


def run_cli(*args):
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", *args])
    return evaluate.run(flag_values)


def test_cli_writes_evaluation_json(model_dir):
    results = run_cli(f"--model_dir={model_dir}", "--k=10", "--max_examples=20",
                      "--batch_size=8", "--elbo_samples=2", "--seed=5")
    with open(os.path.join(model_dir, "evaluation.json")) as f:
        written = json.load(f)
    assert written == results  # JSON keeps floats exactly.
    for key in ("nll_nats", "bits_per_dim", "elbo", "rate", "distortion",
                "active_units", "k", "split", "num_examples", "seed",
                "seconds", "checkpoint"):
        assert key in written, key
    assert written["split"] == "valid" and written["num_examples"] == 20
    assert written["k"] == 10 and written["seed"] == 5
    assert written["checkpoint"] == tf.train.latest_checkpoint(
        run_dir.checkpoint_dir(model_dir))
    # The same weights and data as the library function gives.
    x = np.load(os.path.join(os.path.dirname(model_dir), "images.npz"))["valid"]
    direct = evaluate.evaluate(run_dir.load(model_dir),
                               x[:20, :, :, None].astype(np.float32), k=10,
                               seed=5, batch_size=8, elbo_samples=2)
    assert direct["nll_nats"] == pytest.approx(written["nll_nats"], rel=1e-6)
    table = evaluate.format_table(written)
    assert "nll_nats" in table and "posterior_mean_variances" not in table


def test_cli_evaluates_the_best_checkpoint_on_request(model_dir):
    args = (f"--model_dir={model_dir}", "--k=10", "--max_examples=8",
            "--elbo_samples=2")
    latest, best = run_cli(*args), run_cli(*args, "--best")
    assert best["checkpoint"] == tf.train.latest_checkpoint(
        run_dir.best_checkpoint_dir(model_dir))
    assert best["nll_nats"] != latest["nll_nats"]


def test_a_stopped_or_refused_evaluation_is_one_line_and_keeps_its_json(
        model_dir, monkeypatch, capsys):
    run_cli(f"--model_dir={model_dir}", "--k=2", "--max_examples=4")
    saved = os.path.join(model_dir, evaluate.EVALUATION_FILE)
    with open(saved, "rb") as f:
        before = f.read()
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", f"--model_dir={model_dir}", "--k=2",
                 "--max_examples=4"])
    run = evaluate.run
    monkeypatch.setattr(evaluate, "run", lambda: run(flag_values))

    def stop(*args, **kwargs):  # Ctrl-C in the middle of the bounds.
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(evaluate, "evaluate", stop)
        assert exit_code(lambda: evaluate.main(["evaluate"])) == 130
    assert capsys.readouterr().err == (
        "tfpvae.evaluate: stopped; evaluation.json is written only when an "
        "evaluation ends, so it is as it was.\n")

    def full(*args, **kwargs):  # The disk fills as the results are written.
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), model_dir)
    with monkeypatch.context() as patch:
        patch.setattr(run_dir.tempfile, "mkstemp", full)
        code = exit_code(lambda: evaluate.main(["evaluate"]))
    assert code == (
        f"tfpvae.evaluate: error: no space left on device ({model_dir}); "
        "free some space or make it writable, then run the same command "
        "again.")
    with open(saved, "rb") as f:
        assert f.read() == before
    assert not [n for n in os.listdir(model_dir) if n.startswith(".tmp_")]


def test_a_missing_model_dir_names_the_trained_runs_beside_it(tmp_path,
                                                              monkeypatch):
    # Offline the quickstart trains in runs/mnist_bundled; the README's next
    # command names runs/mnist.
    monkeypatch.chdir(tmp_path)
    missing = os.path.join("runs", "mnist")
    for age, name in enumerate(["mnist_bundled", "old", "notes"]):
        os.makedirs(os.path.join("runs", name))
        if name != "notes":  # A directory without a model is not a run.
            with open(os.path.join("runs", name, run_dir.MODEL_CONFIG_FILE),
                      "w") as f:
                f.write("{}")
        os.utime(os.path.join("runs", name), (1e9 - age, 1e9 - age))
    expected = (f"--model_dir={missing} does not exist; the trained runs "
                f"beside it are {os.path.join('runs', 'mnist_bundled')}, "
                f"{os.path.join('runs', 'old')} (newest first).")
    with pytest.raises(FileNotFoundError) as error:
        run_cli(f"--model_dir={missing}")
    assert str(error.value) == expected
    with pytest.raises(FileNotFoundError) as error:
        tfpvae.load(missing)
    assert str(error.value) == expected.replace("--model_dir", "model_dir")

    for i in range(6):  # Five named, newest first, and a count.
        os.makedirs(os.path.join("many", f"run{i}"))
        with open(os.path.join("many", f"run{i}", run_dir.MODEL_CONFIG_FILE),
                  "w") as f:
            f.write("{}")
        os.utime(os.path.join("many", f"run{i}"), (1e9 + i, 1e9 + i))
    assert run_dir.missing_model_dir(os.path.join("many", "x")).endswith(
        "are " + ", ".join(os.path.join("many", f"run{i}")
                           for i in (5, 4, 3, 2, 1)) + " and 1 more (newest "
        "first).")
    # Nothing trained beside it: how to train one there.
    assert run_dir.missing_model_dir("elsewhere/run") == (
        "--model_dir=elsewhere/run does not exist; train a model there first "
        "with `python -m tfpvae.main --model_dir=elsewhere/run`.")


def test_cli_errors_name_the_problem(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_cli(f"--model_dir={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="no 'test' split"):
        run_cli(f"--model_dir={model_dir}", "--split=test", "--k=2")
    with pytest.raises(ValueError, match="max_examples"):
        run_cli(f"--model_dir={model_dir}", "--max_examples=0")
    with pytest.raises(flags.IllegalFlagValueError):
        run_cli(f"--model_dir={model_dir}", "--split=nope")
