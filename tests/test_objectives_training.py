"""Every --objective trains through the trainer, reports its terms, and
resumes (FactorVAE's discriminator and its optimizer included)."""

import numpy as np
import pytest
import tensorflow as tf

import tfpvae
from tfpvae import run_dir
from tfpvae import train

OBJECTIVES = {
    "beta_tcvae": dict(tc_weight=4.0),
    "factor_vae": dict(tc_weight=10.0, discriminator_learning_rate=1e-4,
                       discriminator_hidden_units=(8, 8)),
    "dip_vae_i": {}, "dip_vae_ii": {}, "info_vae": dict(beta=0.0),
    "capacity": dict(capacity_max=5.0, capacity_steps=4),
}
EXTRAS = {"beta_tcvae": ("tc",), "factor_vae": ("tc", "discriminator_loss"),
          "dip_vae_i": ("dip",), "dip_vae_ii": ("dip",), "info_vae": ("mmd",),
          "capacity": ("capacity",)}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_an_objective_trains_reports_and_resumes(objective, tiny_config,
                                                 tmp_path):
    config = tiny_config(objective=objective, latent_dim=3, max_steps=4,
                         checkpoint_every=2, eval_every=2,
                         **OBJECTIVES[objective])
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(config.replace(max_steps=2), model_dir)
    metrics = train.train_and_evaluate(config, model_dir)
    assert metrics["step"] == 4 and np.isfinite(metrics["eval_elbo"])
    history = run_dir.read_history(model_dir)
    for name in EXTRAS[objective]:
        assert np.isfinite(history[-1][f"train_{name}"]), name
    if objective == "factor_vae":
        # The discriminator is in the checkpoint, and it was trained.
        names = [name for name, _ in tf.train.list_variables(
            tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir)))]
        assert any(n.startswith("objective/discriminator") for n in names)
        assert any(n.startswith("auxiliary_optimizer") for n in names)
    assert isinstance(tfpvae.load(model_dir), tfpvae.VAE)


def test_an_objective_refuses_a_model_it_does_not_fit(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="one latent layer|several"):
        train.train_and_evaluate(
            tiny_config(objective="dip_vae_i", latent_dim=(3, 2)),
            str(tmp_path / "run"))
