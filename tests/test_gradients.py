"""Gradient estimators of the IWAE bound: DReG (Tucker et al., 2019) against
the plain reparameterised gradient.

Both are unbiased estimators of the same gradient: for one draw the decoder
gradients are identical, and over many draws the encoder gradients agree in
expectation, while DReG's have a lower variance.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfpvae

K, DRAWS = 10, 300


def grads_per_draw(model, x, estimator, draws=DRAWS, beta=1.0):
    """[draws, P] gradients of -sum IWAE_K over x, one row per seed."""
    variables = model.trainable_variables

    @tf.function
    def gradient(seed):
        with tf.GradientTape() as tape:
            loss, _ = model.loss(x, k=K, seed=seed, beta=beta,
                                 gradient_estimator=estimator)
        return tf.concat([tf.reshape(g, [-1])
                          for g in tape.gradient(loss, variables)], 0)

    return np.stack([gradient(tf.constant([7, i])).numpy()
                     for i in range(draws)])


@pytest.fixture(scope="module")
def setup():
    tf_keras.utils.set_random_seed(1)
    model = tfpvae.VAE(latent_dim=2, data_shape=(6,), hidden_units=(8,),
                       likelihood="bernoulli")
    x = (np.random.default_rng(0).random((4, 6)) < 0.5).astype(np.float32)
    encoder = sum(int(np.prod(v.shape)) for v in model.encoder.trainable_variables)
    sizes = [int(np.prod(v.shape)) for v in model.trainable_variables]
    names = [v.name for v in model.trainable_variables]
    is_encoder = np.concatenate([
        np.full(size, any(v is e for e in model.encoder.trainable_variables))
        for size, v in zip(sizes, model.trainable_variables)])
    assert is_encoder.sum() == encoder and not is_encoder.all(), names
    return model, x, is_encoder


def test_dreg_gives_the_decoder_the_plain_gradient_draw_by_draw(setup):
    model, x, is_encoder = setup
    standard = grads_per_draw(model, x, "standard", draws=5)
    dreg = grads_per_draw(model, x, "dreg", draws=5)
    np.testing.assert_allclose(dreg[:, ~is_encoder], standard[:, ~is_encoder],
                               rtol=1e-4, atol=1e-6)
    assert not np.allclose(dreg[:, is_encoder], standard[:, is_encoder])


def test_dreg_encoder_gradient_is_unbiased_and_has_lower_variance(setup):
    model, x, is_encoder = setup
    standard = grads_per_draw(model, x, "standard")[:, is_encoder]
    dreg = grads_per_draw(model, x, "dreg")[:, is_encoder]
    # The means agree: z-scores of the difference over the draws.
    stderr = np.sqrt(standard.var(0, ddof=1) / DRAWS + dreg.var(0, ddof=1) / DRAWS)
    active = stderr > 1e-7
    z = (standard.mean(0) - dreg.mean(0))[active] / stderr[active]
    assert np.mean(z ** 2) < 2.0, np.mean(z ** 2)  # ~1 if unbiased
    assert np.mean(np.abs(z) > 4) < 0.01
    # DReG's encoder gradient varies less (Tucker et al., 2019).
    ratio = standard.var(0).sum() / dreg.var(0).sum()
    assert ratio > 1.5, ratio


def test_dreg_is_unbiased_with_a_kl_weight_as_in_warm_up(setup):
    # The beta-weighted log-weights of --beta and --kl_warmup_steps: DReG
    # removes beta times the score term, so its path weight is
    # (1 - beta) w + beta w^2; with w^2 alone the mean is off by tens of
    # standard errors.
    model, x, is_encoder = setup
    standard = grads_per_draw(model, x, "standard", beta=0.1)[:, is_encoder]
    dreg = grads_per_draw(model, x, "dreg", beta=0.1)[:, is_encoder]
    stderr = np.sqrt(standard.var(0, ddof=1) / DRAWS + dreg.var(0, ddof=1) / DRAWS)
    active = stderr > 1e-7
    z = (standard.mean(0) - dreg.mean(0))[active] / stderr[active]
    assert np.mean(z ** 2) < 2.0, np.mean(z ** 2)
    assert np.mean(np.abs(z) > 4) < 0.01


def test_the_value_of_the_objective_does_not_change(setup):
    model, x, _ = setup
    a = model.iwae(x, k=K, seed=3).objective
    b = model.iwae(x, k=K, seed=3, gradient_estimator="dreg").objective
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)


def test_dreg_refuses_a_flow_posterior():
    model = tfpvae.VAE(latent_dim=2, data_shape=(6,), hidden_units=(8,),
                       posterior_flow="iaf", flow_hidden_units=(4,))
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="gradient_estimator=standard"):
        model.iwae(x, k=3, gradient_estimator="dreg")


def test_the_variance_tool_finds_dreg_unbiased_on_a_trained_run(
        tiny_config, tmp_path, monkeypatch):
    # tools/gradient_variance.py (the recorded DReG measurement) on a tiny
    # IWAE run at a KL weight of 0.3: decoder gradients identical, the
    # encoder's equal in expectation. A bias shows as a paired z^2 far above
    # 1 (the path weight w^2 that DReG had at every beta gives 385 at k = 5;
    # heavy-tailed weights push an unbiased one below 1, not above).
    import importlib  # pylint: disable=import-outside-toplevel
    from absl import flags  # pylint: disable=import-outside-toplevel
    from conftest import REPO  # pylint: disable=import-outside-toplevel
    from tfpvae import train  # pylint: disable=import-outside-toplevel
    model_dir = tmp_path / "run"
    train.train_and_evaluate(tiny_config(n_samples=3, gradient_estimator="dreg",
                                         max_steps=6), str(model_dir))
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    tool = importlib.import_module("gradient_variance")
    flag_values = flags.FlagValues()
    tool.define_flags(flag_values)
    flag_values(["tool", f"--model_dir={model_dir}", "--k=1,5", "--draws=200",
                 "--batch=8", "--beta=0.3", "--nountrained"])
    monkeypatch.setattr(tool, "FLAGS", flag_values)
    report = tool.run("test")
    assert report["checkpoint_step"] == 6
    rows = report["models"]["trained"]
    assert [r["k"] for r in rows] == [1, 5]
    for row in rows:
        paired = row["unbiasedness_paired"]
        assert row["decoder_identical"], row["k"]
        assert paired["mean_z2"] < 1.5, (row["k"], paired)
        assert paired["share_abs_z_above_4"] < 0.01, (row["k"], paired)
        assert row["total_variance"]["dreg"] > 0
