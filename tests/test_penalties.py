"""The disentangling penalties and objectives (tfpvae.penalties) against
known answers.

Total correlation: when the batch is the whole dataset (N = B) the
aggregate posterior q(z) = (1/N) sum_j N(mu_j, s^2 I) is computable, and
with means mu_j ~ N(0, A) it is close to N(0, A + s^2 I) for a large batch:
factorised (TC = 0) for A = I, and of total correlation
0.5 (sum_d log S_dd - log det S) for the correlated A of z2 = z1. With
narrow posteriors every code identifies its example: I(x; z) = log N.
"""

import math
import types

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from absl import flags

import tfpvae
from tfpvae import config as config_lib
from tfpvae import penalties
from tfpvae.config import TrainConfig
from tfpvae.models.semi_supervised import SemiSupervisedVAE

DATA_SHAPE = (8, 8, 1)


def gaussian_codes(rng, batch, dim, scale, correlated=False):
    """Means ~ N(0, I) (z2 = z1 when correlated), a draw of each posterior."""
    loc = rng.normal(size=(batch, dim)).astype(np.float32)
    if correlated:
        loc[:, 1] = loc[:, 0]
    scale = np.full((batch, dim), scale, np.float32)
    z = (loc + scale * rng.normal(size=(batch, dim))).astype(np.float32)
    return z, loc, scale


def gaussian_tc(covariance):
    """TC of N(0, S): 0.5 (sum_d log S_dd - log det S)."""
    return 0.5 * (np.sum(np.log(np.diag(covariance)))
                  - np.linalg.slogdet(covariance)[1])


# --------------------------------------------------------------------------
# Total correlation.

@pytest.mark.parametrize("estimator", penalties.TC_ESTIMATORS)
def test_tc_of_a_factorised_aggregate_posterior_is_zero(estimator):
    s = 0.3
    z, loc, scale = gaussian_codes(np.random.default_rng(0), 2000, 2, s)
    tc = penalties.total_correlation(z, loc, scale, 2000, estimator)
    assert abs(np.mean(tc.total_correlation)) < 0.03
    # The densities themselves are those of q(z) = N(0, (1 + s^2) I).
    log_qz = scipy.stats.multivariate_normal(
        np.zeros(2), (1 + s * s) * np.eye(2)).logpdf(z)
    assert np.mean(tc.log_qz) == pytest.approx(np.mean(log_qz), abs=0.05)


@pytest.mark.parametrize("estimator", penalties.TC_ESTIMATORS)
@pytest.mark.parametrize("s", [0.2, 0.3])
def test_tc_of_correlated_codes_is_the_gaussian_closed_form(estimator, s):
    z, loc, scale = gaussian_codes(np.random.default_rng(1), 2000, 2, s,
                                   correlated=True)
    tc = penalties.total_correlation(z, loc, scale, 2000, estimator)
    expected = gaussian_tc(np.array([[1 + s * s, 1.0], [1.0, 1 + s * s]]))
    assert expected > 0.9
    assert np.mean(tc.total_correlation) == pytest.approx(expected, abs=0.06)


def test_mws_and_mss_agree_for_a_large_batch():
    z, loc, scale = gaussian_codes(np.random.default_rng(2), 1000, 2, 0.5,
                                   correlated=True)
    mws, mss = (penalties.total_correlation(z, loc, scale, 20000, e)
                for e in ("mws", "mss"))
    assert np.mean(mws.total_correlation) > 0.4
    np.testing.assert_allclose(np.mean(mws.total_correlation),
                               np.mean(mss.total_correlation), atol=0.02)
    np.testing.assert_allclose(np.mean(mws.log_qz), np.mean(mss.log_qz),
                               atol=0.02)


def test_narrow_posteriors_carry_log_n_nats_of_information():
    """Every code identifies its example: MI = log N. MSS weights the
    example's own term 1/N and gets it for N > B; MWS weights it 1/B."""
    z, loc, scale = gaussian_codes(np.random.default_rng(3), 500, 3, 0.01)
    for n, estimator in ((500, "mws"), (500, "mss"), (100000, "mss")):
        tc = penalties.total_correlation(z, loc, scale, n, estimator)
        assert np.mean(tc.mutual_information) == pytest.approx(
            math.log(n), abs=0.02), (n, estimator)


def brute_force_tc(z, loc, scale, weight):
    """log q(z_i) and sum_d log q(z_id) by a double loop; weight(i, j)."""
    b, d = z.shape
    log_qz, log_prod = np.zeros(b), np.zeros(b)
    for i in range(b):
        joint, marginals = 0.0, np.zeros(d)
        for j in range(b):
            density = scipy.stats.norm.pdf(z[i], loc[j], scale[j])  # [D]
            joint += weight(i, j) * np.prod(density)
            marginals += weight(i, j) * density
        log_qz[i], log_prod[i] = np.log(joint), np.sum(np.log(marginals))
    return log_qz, log_prod


@pytest.mark.parametrize("estimator", penalties.TC_ESTIMATORS)
def test_the_estimators_equal_a_double_loop(estimator):
    rng = np.random.default_rng(4)
    b, d, n = 5, 3, 50
    loc = rng.normal(size=(b, d))
    scale = rng.uniform(0.5, 1.5, size=(b, d))
    z = loc + scale * rng.normal(size=(b, d))
    m = b - 1
    if estimator == "mws":
        weight = lambda i, j: 1.0 / b
    else:  # Own term 1/N, one other (N - M) / (N M), the rest 1/M.
        weight = lambda i, j: (1.0 / n if i == j else (n - m) / (n * m)
                               if j == (i + 1) % b else 1.0 / m)
    log_qz, log_prod = brute_force_tc(z, loc, scale, weight)
    tc = penalties.total_correlation(*(t.astype(np.float32)
                                       for t in (z, loc, scale)), n, estimator)
    log_qz_x = scipy.stats.norm.logpdf(z, loc, scale).sum(1)
    np.testing.assert_allclose(tc.log_qz, log_qz, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tc.log_prod_qz, log_prod, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tc.total_correlation, log_qz - log_prod,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tc.mutual_information, log_qz_x - log_qz,
                               rtol=1e-4, atol=1e-4)
    # MI + TC + dimension-wise KL telescope to log q(z|x) - log p(z).
    log_pz = scipy.stats.norm.logpdf(z).sum(1).astype(np.float32)
    np.testing.assert_allclose(
        tc.mutual_information + tc.total_correlation
        + tc.dimension_wise_kl(log_pz), log_qz_x - log_pz, rtol=1e-4,
        atol=1e-4)


def test_the_stratified_weights_of_each_row_sum_to_one():
    weights = np.exp(penalties.log_importance_weights(6, 40, "mss"))
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(weights), 1 / 40)


def test_a_batch_of_one_has_no_total_correlation_estimate():
    with pytest.raises(ValueError, match="batch of >= 2"):
        penalties.total_correlation(np.zeros((1, 2)), np.zeros((1, 2)),
                                    np.ones((1, 2)), 10)


# --------------------------------------------------------------------------
# DIP-VAE.

def codes_with_covariance(covariance, batch=64, seed=0):
    """Means whose batch covariance (1/B) is exactly `covariance`."""
    d = len(covariance)
    centred = np.random.default_rng(seed).normal(size=(batch, d))
    centred -= centred.mean(0)
    q, _ = np.linalg.qr(centred)  # orthonormal columns, zero mean
    return (np.sqrt(batch) * q @ np.linalg.cholesky(covariance).T
            + 3.0).astype(np.float32)


def test_dip_penalty_of_an_identity_covariance_is_zero():
    loc = codes_with_covariance(np.eye(3))
    covariance = penalties.aggregate_covariance(loc)
    np.testing.assert_allclose(covariance, np.eye(3), atol=1e-5)
    assert float(penalties.dip_penalty(covariance, 10.0, 100.0)) < 1e-6


def test_dip_penalty_of_a_known_covariance():
    target = np.array([[2.0, 0.5], [0.5, 1.0]])
    loc = codes_with_covariance(target)
    covariance = penalties.aggregate_covariance(loc)
    np.testing.assert_allclose(covariance, target, atol=1e-5)
    # Off-diagonal: 2 * 0.5^2; diagonal: (2 - 1)^2 + (1 - 1)^2.
    assert float(penalties.dip_penalty(covariance, 3.0, 7.0)) == pytest.approx(
        3.0 * 0.5 + 7.0 * 1.0, rel=1e-5)
    # DIP-II adds the mean posterior variance to the diagonal.
    scale = np.sqrt(np.tile([[0.25, 0.5]], (64, 1)) * np.linspace(
        0.5, 1.5, 64)[:, None]).astype(np.float32)  # mean variances .25, .5
    covariance_ii = penalties.aggregate_covariance(loc, scale)
    np.testing.assert_allclose(covariance_ii, target + np.diag([0.25, 0.5]),
                               atol=1e-5)
    assert float(penalties.dip_penalty(covariance_ii, 3.0, 7.0)) == \
        pytest.approx(3.0 * 0.5 + 7.0 * (1.25 ** 2 + 0.5 ** 2), rel=1e-5)


# --------------------------------------------------------------------------
# MMD.

@pytest.mark.parametrize("kernel", sorted(penalties.KERNELS))
def test_mmd_of_one_distribution_is_near_zero_and_of_shifted_ones_positive(
        kernel):
    rng = np.random.default_rng(5)
    x, y = (rng.normal(size=(500, 4)).astype(np.float32) for _ in range(2))
    same = float(penalties.mmd_squared(x, y, kernel))
    shifted = float(penalties.mmd_squared(x, y + 1.0, kernel))
    assert abs(same) < 0.003
    assert shifted > 0.1


@pytest.mark.parametrize("kernel", sorted(penalties.KERNELS))
def test_mmd_equals_a_double_loop(kernel):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5
    c = 2.0 * 3
    k = {"imq": lambda a, b: c / (c + np.sum((a - b) ** 2)),
         "rbf": lambda a, b: np.exp(-np.sum((a - b) ** 2) / c)}[kernel]
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    got = penalties.mmd_squared(x.astype(np.float32), y.astype(np.float32),
                                kernel)
    assert float(got) == pytest.approx(xx + yy - 2 * xy, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------
# permute_dims, the capacity schedule, the discriminator.

def test_permute_dims_keeps_each_column_and_breaks_their_dependence():
    a = np.random.default_rng(7).normal(size=(1000, 1)).astype(np.float32)
    z = np.concatenate([a, a, 2 * a], axis=1)  # perfectly dependent columns
    permuted = penalties.permute_dims(z, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(np.sort(permuted, 0), np.sort(z, 0))
    correlation = np.corrcoef(permuted.T)
    assert np.all(np.abs(correlation[np.triu_indices(3, 1)]) < 0.1)
    np.testing.assert_array_equal(
        permuted, penalties.permute_dims(z, seed=[1, 2]).numpy())
    assert not np.array_equal(
        permuted, penalties.permute_dims(z, seed=[1, 3]).numpy())


def test_capacity_schedule():
    values = [float(penalties.capacity_schedule(t, 25.0, 100000))
              for t in (0, 25000, 100000, 250000)]
    assert values == pytest.approx([0.0, 6.25, 25.0, 25.0])
    assert float(penalties.capacity_schedule(7, 25.0, 0)) == 25.0


def test_the_default_discriminator_is_kim_and_mnihs():
    objective = penalties.build_objective(
        TrainConfig(latent_dim=3, objective="factor_vae",
                    discriminator_learning_rate=1e-4), 100)
    layers = objective.discriminator.network.layers
    dense = [layer.units for layer in layers if hasattr(layer, "units")]
    assert dense == [1000] * 6 + [2]
    assert sum(type(layer).__name__ == "LeakyReLU" for layer in layers) == 6
    assert objective.auxiliary.learning_rate == 1e-4


def test_discriminator_tc_is_the_log_odds_of_real():
    discriminator = penalties.Discriminator(3, (8,))
    z = tf.random.stateless_normal([10, 3], seed=[0, 1])
    probability = tf.nn.softmax(discriminator(z))[:, 0]
    np.testing.assert_allclose(
        discriminator.total_correlation(z),
        np.log(probability / (1 - probability)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_a_trained_discriminator_estimates_the_gaussian_total_correlation(rho):
    # FactorVAE's own discriminator, trained by its own loss on draws of
    # q(z) = N(0, S) against their permuted dimensions (no VAE: each
    # "example's" posterior is N(0, S)), estimates TC = E log D/(1 - D),
    # whose closed form is gaussian_tc(S): 0 and 0.511 nats here (seen:
    # -0.003 and 0.522).
    covariance = np.array([[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 1.0]])
    objective = build("factor_vae", discriminator_hidden_units=(64, 64))
    discriminator = objective.discriminator
    posterior = tfp.distributions.MultivariateNormalTriL(
        loc=tf.zeros([512, 3]),
        scale_tril=tf.constant(np.linalg.cholesky(covariance), tf.float32))
    optimizer = tf_keras.optimizers.Adam(1e-3)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(objective._cross_entropy(posterior, seed))
        variables = discriminator.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for i in range(1500):
        step(tf.constant([i, 11]))
    z = posterior.sample(40, seed=tf.constant([3, 3]))  # 20,480 fresh draws
    estimate = float(tf.reduce_mean(
        discriminator.total_correlation(tf.reshape(z, [-1, 3]))))
    assert estimate == pytest.approx(gaussian_tc(covariance), abs=0.06)


# --------------------------------------------------------------------------
# The objectives.

OBJECTIVE_SETTINGS = dict(latent_dim=3, hidden_units=(16,), batch_size=16,
                          discriminator_learning_rate=1e-4,
                          discriminator_hidden_units=(8, 8), tc_weight=4.0,
                          capacity_max=5.0, capacity_steps=100,
                          capacity_weight=3.0, mmd_weight=50.0)
STEP = 40  # C(40) = 2 nats


def tiny_vae(**settings):
    tf_keras.utils.set_random_seed(0)
    return tfpvae.VAE(latent_dim=settings.pop("latent_dim", 3),
                      data_shape=DATA_SHAPE, hidden_units=(16,), **settings)


def tiny_batch(n=16):
    x = tf.random.stateless_uniform((n,) + DATA_SHAPE, seed=[3, 4]) < 0.4
    return {"x": tf.cast(x, tf.float32)}


def call_terms(objective, model, batch, seed=(5, 6)):
    return objective.terms(model, batch, kl="analytic", n_samples=1,
                           beta=1.0, seed=tf.constant(seed), step=tf.constant(
                               STEP, tf.int64), free_bits=0.0,
                           gradient_estimator="standard")


def base_terms(model, batch, seed=(5, 6)):
    return model.training_terms(batch, kl="analytic", n_samples=1, beta=1.0,
                                seed=tf.constant(seed))


@pytest.fixture(scope="module")
def model():
    return tiny_vae()


def build(name, **settings):
    return penalties.build_objective(
        TrainConfig(**{**OBJECTIVE_SETTINGS, "objective": name, **settings}),
        dataset_size=1000)


def test_every_setting_value_is_a_registered_objective():
    assert config_lib.CHOICES["objective"] == tuple(penalties.OBJECTIVES)
    assert set(penalties.OBJECTIVES) == {
        "elbo", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii",
        "info_vae", "capacity"}
    with pytest.raises(ValueError, match="beta_tcvae"):
        penalties.build_objective(types.SimpleNamespace(objective="tcvae"), 1)


def test_elbo_is_the_models_training_terms(model):
    objective = build("elbo")
    assert objective.name == "elbo" and objective.auxiliary is None
    got, expected = call_terms(objective, model, tiny_batch()), base_terms(
        model, tiny_batch())
    for field in ("elbo", "rate", "distortion", "objective"):
        np.testing.assert_array_equal(getattr(got, field),
                                      getattr(expected, field))


def penalty_relation(name, objective, terms, base):
    """What objective - base must be, from the extras (see the module)."""
    extras, n = terms.extras, terms.objective.shape[0]
    if name == "beta_tcvae":
        return -(objective.tc_weight - 1) * extras["tc"]
    if name == "factor_vae":
        return -objective.tc_weight * extras["tc"]
    if name in ("dip_vae_i", "dip_vae_ii"):
        return -extras["dip"] / n
    if name == "info_vae":
        return -objective.mmd_weight * extras["mmd"] / n
    assert name == "capacity"
    np.testing.assert_allclose(extras["capacity"], 2.0)
    return (-base.distortion - 3.0 * np.abs(base.rate - 2.0)) - base.objective


PENALISED = [name for name in penalties.OBJECTIVES if name != "elbo"]


@pytest.mark.parametrize("name", PENALISED)
def test_each_objective_adds_its_penalty_and_trains_every_variable(name, model):
    objective = build(name)
    assert objective.name == name
    objective.check(model)
    batch = tiny_batch()
    with tf.GradientTape(persistent=True) as tape:
        terms = call_terms(objective, model, batch)
        base = base_terms(model, batch)
        loss = -tf.reduce_sum(terms.objective)
        penalty = tf.reduce_sum(terms.objective - base.objective)
    # The reported terms are the model's; the extras are per example.
    for field in ("elbo", "rate", "distortion"):
        np.testing.assert_array_equal(getattr(terms, field), getattr(base, field))
    assert terms.objective.shape == (16,)
    assert set(objective.extra_terms) <= set(terms.extras)
    for extra in objective.extra_terms:
        assert terms.extras[extra].shape == (16,)
        assert np.all(np.isfinite(terms.extras[extra]))
    np.testing.assert_allclose(terms.objective - base.objective,
                               penalty_relation(name, objective, terms, base),
                               rtol=1e-4, atol=1e-4)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    # The penalty itself reaches every encoder variable.
    for variable, grad in zip(model.encoder.trainable_variables, tape.gradient(
            penalty, model.encoder.trainable_variables)):
        assert grad is not None and np.any(grad != 0), variable.name


def test_dip_lambdas_default_to_the_papers_ratios(model):
    assert (build("dip_vae_i").lambda_od, build("dip_vae_i").lambda_d) == (10, 100)
    assert build("dip_vae_ii").lambda_d == 10
    assert build("dip_vae_ii", dip_lambda_d=3.0).lambda_d == 3.0
    batch = tiny_batch()
    posterior = model.encode(batch["x"])
    for name, scale in (("dip_vae_i", None), ("dip_vae_ii", posterior.stddev())):
        terms = call_terms(build(name), model, batch)
        expected = penalties.dip_penalty(penalties.aggregate_covariance(
            posterior.mean(), scale), 10.0, 100.0 if scale is None else 10.0)
        np.testing.assert_allclose(terms.extras["dip"], float(expected),
                                   rtol=1e-5)


def test_the_factor_vae_discriminator_trains_apart_from_the_model(model):
    objective = build("factor_vae")
    auxiliary = objective.auxiliary
    assert auxiliary.name == "discriminator"
    assert auxiliary.learning_rate == 1e-4
    assert len(auxiliary.variables) == 6  # 3 Dense layers
    with tf.GradientTape(persistent=True) as tape:
        loss, extras = auxiliary.loss(model, tiny_batch(), tf.constant([7, 8]))
    assert loss.shape == () and extras["discriminator_loss"].shape == (16,)
    np.testing.assert_allclose(float(loss),
                               np.sum(extras["discriminator_loss"]), rtol=1e-5)
    # An untrained discriminator is near chance: 0.5 (log 2 + log 2) per example.
    assert float(loss) / 16 == pytest.approx(math.log(2), abs=0.3)
    grads = tape.gradient(loss, auxiliary.variables)
    assert all(g is not None and np.any(g != 0) for g in grads)
    assert all(g is None for g in tape.gradient(loss, model.trainable_variables))


def test_the_discriminator_is_saved_and_restored(tmp_path):
    saved, restored = build("factor_vae"), build("factor_vae")
    path = tf.train.Checkpoint(objective=saved).save(str(tmp_path / "ckpt"))
    assert not np.allclose(saved.discriminator.trainable_variables[0],
                           restored.discriminator.trainable_variables[0])
    tf.train.Checkpoint(objective=restored).restore(path).assert_consumed()
    for a, b in zip(saved.discriminator.trainable_variables,
                    restored.discriminator.trainable_variables):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["beta_tcvae", "factor_vae", "info_vae"])
def test_the_objectives_compile_for_any_batch_size(name, model):
    objective = build(name)

    @tf.function(input_signature=[tf.TensorSpec((None,) + DATA_SHAPE)])
    def objective_sum(x):
        return tf.reduce_sum(call_terms(objective, model, {"x": x}).objective)

    eager = tf.reduce_sum(call_terms(objective, model, tiny_batch(12)).objective)
    assert float(objective_sum(tiny_batch(12)["x"])) == pytest.approx(
        float(eager), rel=1e-5)


def test_beta_tcvae_needs_a_batch_of_two(model):
    with pytest.raises(ValueError, match="batch of >= 2"):
        call_terms(build("beta_tcvae"), model, tiny_batch(1))


@pytest.mark.parametrize("model_settings, message", [
    (dict(posterior_flow="iaf", flow_hidden_units=(8,)),
     "diagonal Gaussian posterior"),
    (dict(latent_dim=(4, 3)), "one latent layer"),
])
def test_the_penalties_refuse_models_they_do_not_fit(model_settings, message):
    other = tiny_vae(**model_settings)
    build("elbo").check(other)  # the ELBO takes every model
    for name in PENALISED:
        with pytest.raises(ValueError, match=message):
            build(name).check(other)


def test_the_penalties_refuse_the_semi_supervised_model():
    m2 = SemiSupervisedVAE(num_classes=2, latent_dim=3, data_shape=DATA_SHAPE,
                           hidden_units=(16,))
    build("elbo").check(m2)
    with pytest.raises(ValueError, match="use --objective=elbo"):
        build("dip_vae_i").check(m2)


@pytest.mark.parametrize("settings, message", [
    (dict(objective="factor_vae"), "--discriminator_learning_rate"),
    (dict(objective="beta_tcvae", batch_size=1), "--batch_size >= 2"),
    (dict(objective="factor_vae", discriminator_learning_rate=1e-4,
          batch_size=1), "--batch_size >= 2"),
    (dict(objective="dip_vae_i", latent_dim=(4, 2)), "one --latent_dim size"),
    (dict(objective="info_vae", posterior_flow="iaf"), "--posterior_flow"),
    (dict(objective="capacity", semi_supervised=True), "--semi_supervised"),
    (dict(objective="beta_tcvae", n_samples=2), "--n_samples"),
])
def test_config_refuses_what_the_objectives_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        TrainConfig(**settings)
    assert "\n" not in str(error.value)
    # The ELBO takes each of them.
    settings = {k: v for k, v in settings.items() if k != "objective"}
    TrainConfig(**settings)


def test_the_command_line_refuses_factor_vae_without_a_learning_rate():
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError,
                       match="--discriminator_learning_rate"):
        flag_values(["prog", "--objective=factor_vae"])
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["prog", "--objective=factor_vae",
                 "--discriminator_learning_rate=1e-4"])
    assert config_lib.from_flags(flag_values).objective == "factor_vae"
