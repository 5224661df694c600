"""Flow posteriors: change of variables, identity initialisation, one-pass cost."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfpvae
from tfpvae import flows

tfb = tfp.bijectors
LATENT = 3


def flow_model(key, identity_init=False, context=0):
    flow = flows.FLOWS[key](LATENT, num_layers=2, hidden_units=(16,),
                            context_dim=context, identity_init=identity_init)
    model = tfpvae.VAE(latent_dim=LATENT, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,), posterior_flow=flow,
                       flow_context_units=context)
    return model, flow


def data(n=5):
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


@pytest.mark.parametrize("key", ["iaf", "maf", "realnvp"])
@pytest.mark.parametrize("context", [0, 2])
def test_log_prob_is_the_change_of_variables(key, context):
    """log q(z) = log q0(z0) - log|det dz/dz0|, the Jacobian from autodiff."""
    model, flow = flow_model(key, context=context)
    x = data()
    q = model.encode(x)
    z, log_q = q.experimental_sample_and_log_prob(seed=[1, 2])
    z0 = q.distribution.sample(seed=[1, 2])  # The same base draw.
    _, _, ctx = model._features(x)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z_again = flow(ctx).forward(z0)
    jacobian = tape.batch_jacobian(z_again, z0)  # [N, d, d]
    _, log_abs_det = np.linalg.slogdet(jacobian.numpy().astype(np.float64))
    expected = q.distribution.log_prob(z0).numpy() - log_abs_det
    np.testing.assert_allclose(z, z_again, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_q, expected, rtol=1e-4, atol=1e-4)
    assert np.max(np.abs(log_abs_det)) > 1e-2  # The flow is not the identity.
    # The inverse path (log_prob of a given z) agrees with the sampling path.
    fresh = tf.identity(z)
    np.testing.assert_allclose(q.log_prob(fresh), log_q, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("key", ["iaf", "maf", "realnvp"])
def test_identity_initialised_flow_equals_the_base(key):
    model = tfpvae.VAE(latent_dim=LATENT, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,), posterior_flow=key, flow_layers=3)
    q = model.encode(data())
    z = q.distribution.sample(seed=[0, 3])
    np.testing.assert_allclose(q.bijector.forward(z), z, atol=1e-6)
    np.testing.assert_allclose(q.log_prob(z), q.distribution.log_prob(z),
                               atol=1e-5)


def test_iaf_samples_with_log_prob_in_one_pass():
    """IAF: sample + log q costs one MADE pass per layer; an inverse costs d."""
    model, flow = flow_model("iaf")
    calls = []
    for made in flow.networks:
        original = made.call

        def counting(*args, _original=original, **kwargs):
            calls.append(1)
            return _original(*args, **kwargs)

        made.call = counting
    q = model.encode(data())
    q.experimental_sample_and_log_prob(4, seed=[0, 1])
    assert len(calls) == flow.num_layers
    # TFP's bijector cache also serves log_prob of the sample just drawn.
    calls.clear()
    z = q.sample(seed=[0, 2])
    q.log_prob(z)
    assert len(calls) == flow.num_layers
    # Without the cache (a new tensor), log_prob runs the sequential inverse.
    calls.clear()
    q.log_prob(tf.identity(z))
    assert len(calls) >= flow.num_layers * LATENT


def test_flow_rejects_analytic_kl_and_trains_with_mc():
    model = tfpvae.VAE(latent_dim=LATENT, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,), posterior_flow="iaf")
    with pytest.raises(ValueError, match="kl='mc'"):
        model.elbo(data(), kl="analytic")
    out = model.elbo(data(), kl="mc", n_samples=2, seed=0)
    assert out.elbo.shape == (5,)


def test_user_bijector_and_callable():
    shift = tf.Variable([0.5, -1.0, 2.0])
    model = tfpvae.VAE(latent_dim=LATENT, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,), posterior_flow=tfb.Shift(shift))
    q = model.encode(data())
    z0 = q.distribution.sample(seed=[0, 4])
    z = q.bijector.forward(z0)
    np.testing.assert_allclose(z - z0, np.broadcast_to(shift.numpy(), z.shape),
                               atol=1e-6)
    # A shift has unit Jacobian: the density just moves.
    np.testing.assert_allclose(q.log_prob(z), q.distribution.log_prob(z0),
                               atol=1e-5)
    assert any(v is shift for v in model.trainable_variables)

    class ScaleFlow(tf.Module):
        def __init__(self):
            super().__init__()
            self.log_scale = tf.Variable(tf.fill([LATENT], 0.3))

        def __call__(self, context):
            return tfb.Scale(log_scale=self.log_scale)

    user = ScaleFlow()
    model = tfpvae.VAE(latent_dim=LATENT, data_shape=(4,), likelihood="gaussian",
                       hidden_units=(8,), posterior_flow=user)
    q = model.encode(data())
    z0 = q.distribution.sample(seed=[0, 5])
    z = q.bijector.forward(z0)
    np.testing.assert_allclose(
        q.log_prob(z), q.distribution.log_prob(z0) - 0.3 * LATENT, atol=1e-5)
    assert any(v is user.log_scale for v in model.trainable_variables)
    assert model.get_config()["posterior_flow"] == "<custom>"


def test_realnvp_needs_two_latent_dims():
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        tfpvae.VAE(latent_dim=1, data_shape=(4,), likelihood="gaussian",
                   hidden_units=(8,), posterior_flow="realnvp")
