"""The VAE model: construction, variables, sampling, errors, run_dir."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfpvae
from tfpvae import run_dir

IMAGE = (6, 6, 1)


def binary_images(n=8, shape=IMAGE, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n,) + shape) < 0.3).astype(np.float32)


CONFIGS = {
    "mlp": dict(),
    "conv": dict(architecture="conv", conv_filters=(4, 8)),
    "mixture": dict(prior="mixture", mixture_components=3),
    "vamp": dict(prior="vamp", mixture_components=3),
    "iaf_context": dict(posterior_flow="iaf", flow_layers=2, flow_context_units=4),
    "maf": dict(posterior_flow="maf", flow_layers=2),
    "realnvp": dict(posterior_flow="realnvp", flow_layers=2),
    "gaussian_learned": dict(likelihood="gaussian"),
    "gaussian_decoder": dict(likelihood="gaussian", gaussian_scale="decoder"),
    "continuous_bernoulli": dict(likelihood="continuous_bernoulli"),
}


def small(**kwargs):
    kwargs.setdefault("latent_dim", 2)
    kwargs.setdefault("data_shape", IMAGE)
    kwargs.setdefault("hidden_units", (16,))
    kwargs.setdefault("flow_hidden_units", (8,))
    return tfpvae.VAE(**kwargs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_variable_is_tracked_and_trained(name):
    model = small(**CONFIGS[name])
    x = binary_images()
    # Every tf_keras weight of every network is a trainable variable of the
    # model (the Keras 3 trap: its layers would be silently left out).
    tracked = {v.ref() for v in model.trainable_variables}
    modules = [model.encoder, model.decoder]
    if model.flow is not None:
        modules += model.flow.networks
    for module in modules:
        for w in module.trainable_weights:
            assert w.ref() in tracked, w.name
    expected_extra = {"mixture": 3, "vamp": 1, "gaussian_learned": 1}.get(name, 0)
    if model.flow is not None:
        expected_extra += len(model.flow.gates)
    network_weights = sum(len(m.trainable_weights) for m in modules)
    assert len(model.trainable_variables) == network_weights + expected_extra

    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = tf_keras.optimizers.Adam(1e-2)
    kl = "analytic" if model.has_analytic_kl else "mc"
    for step in range(3):
        with tf.GradientTape() as tape:
            loss, _ = model.loss(x, kl=kl, seed=step)
        grads = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None for g in grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    for v, b in zip(model.trainable_variables, before):
        assert not np.allclose(v.numpy(), b), f"{v.name} did not change"


def test_distribution_types_and_shapes():
    model = small(latent_dim=3)
    x = binary_images(5)
    q = model.encode(x)
    assert isinstance(q, tfp.distributions.MultivariateNormalDiag)
    assert q.batch_shape == [5] and q.event_shape == [3]
    p = model.decode(q.sample(4, seed=[0, 1]))
    assert isinstance(p, tfp.distributions.Independent)
    assert p.batch_shape == [4, 5] and p.event_shape == IMAGE
    assert model.prior.event_shape == [3]
    out = model.elbo(x, n_samples=2, seed=0)
    assert isinstance(out, tfpvae.ELBOResult)
    for t in (out.elbo, out.rate, out.distortion, out.objective,
              *out.layer_rates):
        assert t.shape == (5,)
    assert len(out.layer_rates) == 1
    flow_q = small(latent_dim=3, posterior_flow="iaf").encode(x)
    # tfd.TransformedDistribution(base, bijector) (TFP returns a private
    # subclass of Distribution for non-composite bijectors).
    assert "TransformedDistribution" in type(flow_q).__name__
    assert isinstance(flow_q.distribution, tfp.distributions.MultivariateNormalDiag)
    assert flow_q.batch_shape == [5] and flow_q.event_shape == [3]


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli",
                                        "gaussian"])
def test_sample_is_reproducible_with_shapes_and_ranges(likelihood):
    model = small(likelihood=likelihood)
    a = model.sample(7, seed=3).numpy()
    b = model.sample(7, seed=3).numpy()
    c = model.sample(7, seed=4).numpy()
    assert a.shape == (7,) + IMAGE and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    means = model.sample(7, seed=3, mean=True).numpy()
    if likelihood == "bernoulli":
        assert set(np.unique(a)) <= {0.0, 1.0}
    if likelihood != "gaussian":
        assert a.min() >= 0 and a.max() <= 1
        assert means.min() >= 0 and means.max() <= 1
    assert np.all(np.isfinite(means))


def test_bad_arguments_name_the_valid_choices():
    cases = [
        (dict(likelihood="poisson"), "bernoulli"),
        (dict(architecture="densenet"), "conv"),
        (dict(prior="laplace"), "vamp"),
        (dict(posterior_flow="glow"), "realnvp"),
        (dict(activation="relu6"), "leaky_relu"),
        (dict(latent_dim=0), "positive"),
        (dict(latent_dim=-3), "positive"),
        (dict(architecture="conv", data_shape=(10,)), "mlp"),
        (dict(likelihood="gaussian", gaussian_scale=-1.0), "positive"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            small(**kwargs)
    model = small()
    with pytest.raises(ValueError, match=r"expects \[N, 6, 6, 1\]"):
        model.encode(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="choose one of"):
        model.elbo(binary_images(), kl="exact")


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_analytic_kl_is_refused_where_there_is_no_closed_form(prior):
    model = small(prior=prior, mixture_components=2)
    with pytest.raises(ValueError, match="use kl='mc'"):
        model.elbo(binary_images(), kl="analytic")


def test_bernoulli_check_data_suggests_the_fixes():
    model = small()
    with pytest.raises(ValueError, match="binarize.*continuous_bernoulli"):
        model.likelihood.check_data(np.full((2,) + IMAGE, 0.5))
    model.likelihood.check_data(binary_images())


def test_vamp_prior_is_the_mixture_of_pseudo_input_posteriors():
    model = small(prior="vamp", mixture_components=4)
    x = binary_images(4)
    assert model.init_prior_from_data(x)
    assert not small().init_prior_from_data(x)  # No pseudo-inputs to set.
    z = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    q = model.encode(x)
    # log (1/K sum_k q(z|u_k)), computed by hand from the four posteriors.
    per_component = np.stack([q[k].log_prob(z).numpy() for k in range(4)])
    expected = np.log(np.mean(np.exp(per_component), axis=0))
    np.testing.assert_allclose(model.prior.log_prob(z), expected, rtol=1e-5)


def test_mixed_precision_matches_float32():
    x = binary_images(16)
    full = small(hidden_units=(64, 64), seed=1)
    mixed = small(hidden_units=(64, 64), seed=1, dtype_policy="mixed_bfloat16")
    for a, b in zip(mixed.trainable_variables, full.trainable_variables):
        assert a.dtype == tf.float32  # Variables stay float32.
        a.assign(b)
    want = full.elbo(x, seed=2)
    got = mixed.elbo(x, seed=2)
    assert got.elbo.dtype == tf.float32
    np.testing.assert_allclose(got.elbo, want.elbo, rtol=0.02)
    np.testing.assert_allclose(got.rate, want.rate, rtol=0.05, atol=0.02)


def test_checkpoint_round_trip(tmp_path):
    model = small(prior="mixture", mixture_components=3, posterior_flow="iaf",
                  flow_context_units=2)
    for v in model.trainable_variables:
        v.assign(v + 0.01)
    run_dir.save_model_config(model, str(tmp_path))
    ckpt = run_dir.make_checkpoint(model)
    manager = tf.train.CheckpointManager(ckpt, run_dir.checkpoint_dir(str(tmp_path)),
                                         max_to_keep=2)
    manager.save()
    loaded = tfpvae.load(str(tmp_path))
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded.sample(3, seed=1), model.sample(3, seed=1))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tfpvae model directory"):
        tfpvae.load(str(tmp_path))
    run_dir.save_model_config(small(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        tfpvae.load(str(tmp_path))
    assert os.path.exists(tmp_path / run_dir.MODEL_CONFIG_FILE)


def test_conv_handles_sizes_that_do_not_divide():
    model = small(architecture="conv", conv_filters=(4, 8), data_shape=(7, 9, 3),
                  likelihood="gaussian", gaussian_scale="decoder")
    x = np.random.default_rng(0).random((2, 7, 9, 3)).astype(np.float32)
    assert model.decode(model.encode(x).sample(seed=[0, 1])).event_shape == (7, 9, 3)
    assert model.elbo(x, seed=0).elbo.shape == (2,)
