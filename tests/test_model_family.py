"""A model family other than the VAE trains, resumes, loads and evaluates
through the real trainer and evaluator: nothing in them is VAE-specific.

The family (tests/linear_gaussian.py) has a closed-form log p(x), so the
bounds the trainer and `python -m tfpvae.evaluate` report are checked
against it: ELBO <= IWAE_k <= log p(x), with IWAE_k close to log p(x).
"""

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import tfpvae
from tfpvae import evaluate
from tfpvae import evaluation
from tfpvae import inputs
from tfpvae import train
from tfpvae.config import TrainConfig

import linear_gaussian

DIM, LATENT = 6, 2


@pytest.fixture
def data_path(tmp_path):
    """Data drawn from a linear-Gaussian model: x = W z + b + 0.5 eps."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(DIM, LATENT))
    b = rng.normal(size=DIM)

    def draw(n):
        z = rng.normal(size=(n, LATENT))
        return (z @ w.T + b + 0.5 * rng.normal(size=(n, DIM))).astype(np.float32)

    path = tmp_path / "linear.npz"
    np.savez(path, train=draw(2000), valid=draw(500))
    return str(path)


def exact_log_likelihood(model, x) -> float:
    return float(tf.reduce_mean(model.marginal().log_prob(x)))


def test_a_second_family_trains_resumes_and_evaluates(data_path, tmp_path):
    config = TrainConfig(dataset=data_path, latent_dim=LATENT, batch_size=100,
                         max_steps=400, eval_every=200, eval_k=200,
                         learning_rate=0.02, standardize=False, plots=False,
                         log_every=100)
    model_dir = str(tmp_path / "run")
    dataset = inputs.load_data(config)
    x_valid = dataset.splits["valid"]
    untrained = linear_gaussian.build(config, dataset.data_shape)
    before = exact_log_likelihood(untrained, x_valid)

    metrics = train.train_and_evaluate(config.replace(max_steps=200), model_dir,
                                       build_model=linear_gaussian.build)
    assert metrics["step"] == 200
    metrics = train.train_and_evaluate(config, model_dir,  # Resumes.
                                       build_model=linear_gaussian.build)
    assert metrics["step"] == 400 and metrics["kl"] == "analytic"

    model = tfpvae.load(model_dir)  # Rebuilt through the family registry.
    assert isinstance(model, linear_gaussian.LinearGaussian)
    exact = exact_log_likelihood(model, x_valid)
    assert exact > before + 1.0  # Training raised log p(x).
    # ELBO <= IWAE_200 <= log p(x), the ELBO averaged over 200 draws per
    # example; IWAE_200 is close to log p(x) here.
    precise = evaluation.Evaluator(model, k=200, batch_size=500,
                                   elbo_samples=200)(x_valid)
    assert precise["elbo"] <= precise["iwae"] <= exact + 0.02
    assert metrics["eval_iwae"] == pytest.approx(exact, abs=0.05)

    # The evaluator of training and of the command line give the same
    # numbers for the same settings and seed.
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", f"--model_dir={model_dir}", "--k=200",
                 "--elbo_samples=1", f"--batch_size={config.eval_batch_size}",
                 f"--seed={config.seed}"])
    results = evaluate.run(flag_values)
    assert -results["nll_nats"] == pytest.approx(metrics["eval_iwae"], rel=1e-6)
    for key in ("elbo", "rate", "distortion"):
        assert results[key] == pytest.approx(metrics[f"eval_{key}"],
                                             rel=1e-6), key
    direct = evaluation.Evaluator(model, kl="auto", k=200,
                                  batch_size=config.eval_batch_size,
                                  seed=config.seed)(x_valid)
    assert direct["iwae"] == pytest.approx(metrics["eval_iwae"], rel=1e-6)
