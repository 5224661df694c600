"""TensorBoard: what a run writes, read back with tensorboard's own reader."""

import os

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tfpvae import run_dir
from tfpvae import train


def accumulate(path: str) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0,
                             event_accumulator.IMAGES: 0,
                             event_accumulator.HISTOGRAMS: 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def tensorboard_dir(tmp_path_factory):
    from tfpvae.config import TrainConfig
    from conftest import TINY
    model_dir = str(tmp_path_factory.mktemp("tb") / "run")
    config = TrainConfig(**{**TINY, "max_steps": 6, "log_every": 2,
                            "eval_every": 3, "latent_dim": (3, 2),
                            "latent_hidden_units": (8,)})
    train.train_and_evaluate(config, model_dir)
    return os.path.join(model_dir, run_dir.TENSORBOARD_SUBDIR)


def test_training_scalars_are_tensorboard_scalars(tensorboard_dir):
    tags = accumulate(os.path.join(tensorboard_dir, "train")).Tags()["tensors"]
    for tag in ("loss", "elbo", "rate", "distortion", "rate_layer1",
                "rate_layer2", "beta", "learning_rate", "examples_per_sec"):
        assert tag in tags, tag


def test_evaluations_write_scalars_images_and_histograms(tensorboard_dir):
    accumulator = accumulate(os.path.join(tensorboard_dir, "eval"))
    tags = accumulator.Tags()
    for tag in ("elbo", "rate", "distortion", "iwae", "rate_layer1"):
        assert tag in tags["tensors"], tag
        assert [e.step for e in accumulator.Tensors(tag)] == [3, 6]
    # tf.summary.image and .histogram are stored as tensors with their
    # plugins' metadata; the accumulator names the plugin of each tag.
    plugins = {tag: accumulator.SummaryMetadata(tag).plugin_data.plugin_name
               for tag in tags["tensors"]}
    assert plugins["reconstructions"] == "images"
    assert plugins["prior_samples"] == "images"
    assert plugins["posterior_mean/z0"] == "histograms"
    assert plugins["elbo"] == "scalars"


def test_the_run_settings_are_hparams(tensorboard_dir):
    accumulator = accumulate(tensorboard_dir)
    content = accumulator.PluginTagToContent("hparams")
    assert content, "no hparams summary"
    data = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"])
    hparams = data.session_start_info.hparams
    assert hparams["batch_size"].number_value == 32
    assert hparams["latent_dim"].string_value == "3,2"
    assert hparams["dataset"].string_value == "sklearn_digits"
