"""Hierarchical VAEs against math.

A two-layer linear-Gaussian hierarchy z2 -> z1 -> x,

    z2 ~ N(0, I),  z1 | z2 ~ N(A z2 + a, S1),  x | z1 ~ N(W z1 + b, s^2 I),

has a closed-form log p(x) = log N(x; W a + b, W (A A^T + S1) W^T + s^2 I)
and a closed-form posterior p(z2|x) p(z1|z2, x). With that posterior the
objectives' joint-distribution path (per-layer log-densities of a
`tfd.JointDistributionNamed`) must give ELBO = log p(x) for every draw;
with a perturbed one, E[ELBO] < E[IWAE_k] < log p(x), increasing in k. The
ladder's precision-weighted merge is the normalised product of the two
Gaussians. Every variable of every layer trains, and one latent size is
today's single-layer model.
"""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfpvae
from tfpvae import train
from tfpvae.models import hierarchy

tfd = tfp.distributions

D1, D2, DIM, SIGMA = 3, 2, 5, 0.4


class Chain:
    """The linear-Gaussian chain's parameters and closed forms (numpy)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.a_mat = rng.normal(size=(D1, D2))
        self.a = rng.normal(size=D1)
        l1 = np.tril(rng.normal(size=(D1, D1)) * 0.3) + np.eye(D1) * 0.7
        self.s1 = l1 @ l1.T
        self.w = rng.normal(size=(DIM, D1))
        self.b = rng.normal(size=DIM)
        cov = self.w @ (self.a_mat @ self.a_mat.T + self.s1) @ self.w.T \
            + SIGMA ** 2 * np.eye(DIM)
        self.marginal = scipy.stats.multivariate_normal(
            self.w @ self.a + self.b, cov)
        self.x = self.marginal.rvs(8, random_state=rng).astype(np.float32)

    def posterior_z2(self):
        """p(z2|x) = N(K2 (x - m), P2), from x | z2 ~ N(M z2 + m, C):
        returns K2, m and P2."""
        m_mat, m = self.w @ self.a_mat, self.w @ self.a + self.b
        c = self.w @ self.s1 @ self.w.T + SIGMA ** 2 * np.eye(DIM)
        p2 = np.linalg.inv(np.eye(D2) + m_mat.T @ np.linalg.solve(c, m_mat))
        return p2 @ m_mat.T @ np.linalg.inv(c), m, p2

    def posterior_z1(self):
        """p(z1|z2, x) = N(G z2 + g0 + K1 (x - b), P1): returns G, g0, K1
        and P1."""
        s1_inv = np.linalg.inv(self.s1)
        p1 = np.linalg.inv(s1_inv + self.w.T @ self.w / SIGMA ** 2)
        return (p1 @ s1_inv @ self.a_mat, p1 @ s1_inv @ self.a,
                p1 @ self.w.T / SIGMA ** 2, p1)


class ChainModel(tfpvae.LatentVariableModel):
    """The chain as a model whose posterior is exact, or perturbed."""

    family = "test_chain"

    def __init__(self, chain: Chain, shift=0.0, scale=1.0):
        super().__init__((DIM,), (D1, D2))
        self.chain, self.shift, self.scale = chain, shift, scale
        c = lambda v: tf.constant(v, tf.float32)
        self.a_mat, self.a = c(chain.a_mat), c(chain.a)
        self.s1_tril = c(np.linalg.cholesky(chain.s1))
        self.w, self.b = c(chain.w), c(chain.b)

    def encode(self, x, labels=None):
        c = lambda v: tf.constant(v, tf.float32)
        k2, m, p2 = self.chain.posterior_z2()
        g_mat, g0, k1, p1 = self.chain.posterior_z1()
        x = self.check_x(x)
        loc2 = tf.linalg.matvec(c(k2), x - c(m)) + self.shift
        z2 = tfd.MultivariateNormalTriL(
            loc2, c(np.linalg.cholesky(p2) * self.scale))
        g_x = tf.linalg.matvec(c(k1), x - self.b) + c(g0) + self.shift
        g_mat, p1_tril = c(g_mat), c(np.linalg.cholesky(p1) * self.scale)
        z1 = hierarchy._node("z2", lambda v: tfd.MultivariateNormalTriL(
            tf.linalg.matvec(g_mat, v) + g_x, p1_tril))
        return tfd.JointDistributionNamed({"z2": z2, "z1": z1})

    @property
    def prior(self):
        z1 = hierarchy._node("z2", lambda v: tfd.MultivariateNormalTriL(
            tf.linalg.matvec(self.a_mat, v) + self.a, self.s1_tril))
        return tfd.JointDistributionNamed(
            {"z2": tfd.MultivariateNormalDiag(tf.zeros([D2])), "z1": z1})

    def decode(self, z, labels=None):
        loc = tf.linalg.matvec(self.w, z["z1"]) + self.b
        return tfd.MultivariateNormalDiag(loc, tf.fill(tf.shape(loc), SIGMA))

    def posterior_mean(self, x, labels=None):
        return self.encode(x).sample_distributions(seed=[0, 0])[0]["z2"].mean()

    @property
    def has_analytic_kl(self):
        return True

    def get_config(self):
        return {"family": self.family}


@pytest.fixture(scope="module")
def chain():
    return Chain()


def test_the_exact_posterior_makes_every_draw_of_the_elbo_log_px(chain):
    model = ChainModel(chain)
    log_px = chain.marginal.logpdf(chain.x)
    out = model.elbo(chain.x, kl="mc", n_samples=4, seed=1)
    np.testing.assert_allclose(out.elbo.numpy(), log_px, atol=2e-3)
    np.testing.assert_allclose(model.log_likelihood(chain.x, k=50, seed=2),
                               log_px, atol=2e-3)
    assert len(out.layer_rates) == 2
    np.testing.assert_allclose(sum(out.layer_rates).numpy(), out.rate.numpy(),
                               rtol=1e-5)
    # The closed-form per-layer KL averages to the same bound.
    analytic = model.elbo(chain.x, kl="analytic", n_samples=4000, seed=3)
    np.testing.assert_allclose(analytic.elbo.numpy(), log_px, atol=0.05)


def test_bounds_are_ordered_and_tighten_with_k(chain):
    model = ChainModel(chain, shift=0.3, scale=1.5)
    log_px = chain.marginal.logpdf(chain.x).mean()
    elbo = float(tf.reduce_mean(model.elbo(chain.x, kl="mc", n_samples=2000,
                                           seed=4).elbo))
    iwae = [float(tf.reduce_mean(model.log_likelihood(
        np.repeat(chain.x, 50, axis=0), k=k, seed=5))) for k in (2, 10, 100)]
    assert elbo < iwae[0] < iwae[1] < iwae[2] < log_px
    assert log_px - elbo > 0.1  # The perturbation makes the gap visible.


def test_precision_weighted_merge_is_the_normalised_product():
    rng = np.random.default_rng(0)
    loc_a, loc_b = rng.normal(size=4), rng.normal(size=4)
    scale_a, scale_b = rng.uniform(0.2, 2, 4), rng.uniform(0.2, 2, 4)
    loc, scale = (t.numpy() for t in hierarchy.precision_weighted(
        *(tf.constant(v) for v in (loc_a, scale_a, loc_b, scale_b))))
    # log N(z; a) + log N(z; b) - log N(z; merged) does not depend on z.
    z = rng.normal(size=(7, 4)) * 3
    norm = scipy.stats.norm
    diff = (norm.logpdf(z, loc_a, scale_a) + norm.logpdf(z, loc_b, scale_b)
            - norm.logpdf(z, loc, scale))
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape),
                               atol=1e-9)
    # And the normaliser is the convolution N(loc_a; loc_b, sa^2 + sb^2).
    np.testing.assert_allclose(
        diff[0], norm.logpdf(loc_a, loc_b, np.sqrt(scale_a ** 2 + scale_b ** 2)),
        atol=1e-9)


def tiny_hierarchy(**kwargs):
    kwargs = {"latent_dim": (4, 3), "data_shape": (8, 8, 1),
              "hidden_units": (16,), "latent_hidden_units": (8,),
              "flow_hidden_units": (8,), **kwargs}
    return tfpvae.VAE(**kwargs)


HIERARCHIES = [dict(hierarchy=h) for h in ("ladder", "bottom_up", "tomczak")] + [
    dict(hierarchy="ladder", prior="vamp", mixture_components=3,
         posterior_flow="iaf", flow_context_units=2, latent_dim=(4, 3, 2)),
    dict(hierarchy="bottom_up", prior="mixture", mixture_components=2,
         architecture="conv", conv_filters=(4,)),
    dict(hierarchy="tomczak", architecture="resnet", conv_filters=(4,),
         resnet_blocks=1, likelihood="continuous_bernoulli"),
]


@pytest.mark.parametrize("kwargs", HIERARCHIES,
                         ids=lambda k: "-".join(str(v) for v in k.values()))
def test_every_variable_of_every_layer_trains(kwargs):
    tf_keras.utils.set_random_seed(0)
    model = tiny_hierarchy(**kwargs)
    assert isinstance(model, hierarchy.HierarchicalVAE)
    x = (np.random.default_rng(0).random((6, 8, 8, 1)) < 0.5).astype(np.float32)
    kl = "analytic" if model.has_analytic_kl else "mc"
    optimizer = tf_keras.optimizers.Adam(0.01)
    before = [v.numpy().copy() for v in model.trainable_variables]
    variables = model.trainable_variables

    def step(seed):  # Eager: tracing these models costs more than 3 steps.
        with tf.GradientTape() as tape:
            loss, terms = model.loss(x, kl=kl, seed=seed)
        grads = tape.gradient(loss, variables)
        missing = [v.name for v, g in zip(variables, grads) if g is None]
        assert not missing, missing
        optimizer.apply_gradients(zip(grads, variables))
        return terms

    for i in range(3):
        terms = step(tf.constant([0, i]))
    for v, b in zip(model.trainable_variables, before):
        assert not np.allclose(v.numpy(), b), f"{v.name} did not change"
    assert len(terms.layer_rates) == len(model.latent_sizes)
    assert model.sample(3, seed=0).shape == (3, 8, 8, 1)
    assert model.posterior_mean(x).shape == (6, model.latent_dim)
    assert [m.shape[-1] for m in model.layer_means(x)] == list(
        model.latent_sizes)
    assert model.decode_top(np.zeros((2, model.latent_dim), np.float32),
                            lower="sample", seed=1).mean().shape == (2, 8, 8, 1)
    # The log-likelihood in chunks is the IWAE bound: above the ELBO.
    ll = model.log_likelihood(x, k=200, seed=1, chunk_size=30)
    elbo = model.elbo(x, kl="mc", n_samples=200, seed=2).elbo
    assert float(tf.reduce_mean(ll)) > float(tf.reduce_mean(elbo))
    rebuilt = tfpvae.models.from_config(model.get_config())
    assert isinstance(rebuilt, hierarchy.HierarchicalVAE)
    assert [v.shape for v in rebuilt.trainable_variables] == [
        v.shape for v in model.trainable_variables]


def test_one_latent_size_is_the_single_layer_model():
    tf_keras.utils.set_random_seed(3)
    one = tfpvae.VAE(latent_dim=(3,), data_shape=(6,), hidden_units=(8,),
                     likelihood="gaussian")
    tf_keras.utils.set_random_seed(3)
    plain = tfpvae.VAE(latent_dim=3, data_shape=(6,), hidden_units=(8,),
                       likelihood="gaussian")
    assert type(one) is tfpvae.VAE and one.get_config() == plain.get_config()
    for a, b in zip(one.trainable_variables, plain.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(one.loss(x, seed=1)[0], plain.loss(x, seed=1)[0])


def test_free_bits_floor_each_layer_in_the_objective_only():
    tf_keras.utils.set_random_seed(0)
    model = tiny_hierarchy()
    x = (np.random.default_rng(1).random((6, 8, 8, 1)) < 0.5).astype(np.float32)
    plain = model.elbo(x, kl="analytic", seed=4)
    floor = 1000.0  # Above every layer's rate: each term is the constant.
    floored = model.elbo(x, kl="analytic", seed=4, free_bits=floor)
    np.testing.assert_allclose(floored.elbo, plain.elbo, rtol=1e-6)
    np.testing.assert_allclose(floored.objective,
                               -(plain.distortion + 2 * floor), rtol=1e-6)
    variables = [v for v in model.trainable_variables if "encoder" in v.name]
    with tf.GradientTape() as tape:
        objective = tf.reduce_sum(model.elbo(x, kl="analytic", seed=4,
                                             free_bits=floor).objective)
    with tf.GradientTape() as tape_rate:
        rate = tf.reduce_sum(model.elbo(x, kl="analytic", seed=4).rate)
    # No gradient of the rate passes: the objective's gradient is the
    # distortion's alone.
    with tf.GradientTape() as tape_d:
        distortion = -tf.reduce_sum(model.elbo(x, kl="analytic", seed=4).distortion)
    for g, gd, gr in zip(tape.gradient(objective, variables),
                         tape_d.gradient(distortion, variables),
                         tape_rate.gradient(rate, variables)):
        np.testing.assert_allclose(g, gd, atol=1e-5)
        assert np.abs(gr.numpy()).max() > 0  # The rate itself has one.
    zero = model.elbo(x, kl="analytic", seed=4, free_bits=0.0)
    np.testing.assert_allclose(zero.objective, plain.objective, rtol=1e-6)


def test_a_hierarchy_trains_through_the_trainer(tiny_config, tmp_path):
    config = tiny_config(latent_dim=(3, 2), max_steps=6, hierarchy="ladder",
                         latent_hidden_units=(8,), free_bits=0.1)
    model_dir = str(tmp_path / "run")
    metrics = train.train_and_evaluate(config, model_dir)
    for key in ("eval_rate_layer1", "eval_rate_layer2"):
        assert np.isfinite(metrics[key])
    history = tfpvae.run_dir.read_history(model_dir)
    assert {"train_rate_layer1", "train_rate_layer2"} <= set(history[-1])
    assert metrics["model_config"]["family"] == "hierarchical_vae"
    model = tfpvae.load(model_dir)
    assert isinstance(model, hierarchy.HierarchicalVAE)
    assert model.latent_sizes == (3, 2)
