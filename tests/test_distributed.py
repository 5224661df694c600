"""Training under tf.distribute strategies: resuming, evaluation, workers.

tests/test_main.py already checks that the mirrored strategy on two logical
CPUs reaches the single-device result for the same global batch (the loss is
scaled by the global batch). These tests add what that does not cover: a
mirrored run resumes from its checkpoint, its evaluation is the
single-device evaluation of the same weights, and two workers of the
command line, set up by TF_CONFIG, hold the same variables, reach the
single-device result, and only the chief writes the model directory.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfpvae
from tfpvae import run_dir
from tfpvae import evaluation
from tfpvae import inputs
from tfpvae import train

from conftest import TINY_FLAGS, cli_env


#: Nearly noiseless posterior samples make the updates deterministic, so
#: that replicas drawing different noise still follow one trajectory.
SETTINGS = dict(max_steps=20, batch_size=64, epsilon_std=1e-6, plots=False)

#: A worker of a multi-worker run: `python -m tfpvae.main ARGS` (argv[1]: the
#: arguments as JSON) that then saves its copy of the model's variables
#: (argv[2]: the output .npz).
WORKER = """
import json
import runpy
import sys

import numpy as np

from tfpvae import run_dir

models = []
make_checkpoint = run_dir.make_checkpoint

def capture(model, *args, **kwargs):
    models.append(model)
    return make_checkpoint(model, *args, **kwargs)

run_dir.make_checkpoint = capture
output = sys.argv[2]
sys.argv = ["tfpvae.main", *json.loads(sys.argv[1])]
try:
    runpy.run_module("tfpvae.main", run_name="__main__", alter_sys=True)
finally:
    if models:
        np.savez(output, *[v.numpy() for v in models[0].trainable_variables])
"""


def read_json(path):
    with open(path) as f:
        return json.load(f)


def latest_step(model_dir):
    latest = tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else None


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mirrored_run_resumes_and_evaluates_like_one_device(tiny_config,
                                                             run_cli, tmp_path):
    argv = [*TINY_FLAGS, *[f"--{k}={v}" for k, v in SETTINGS.items()],
            "--strategy=mirrored", "--cpu_devices=2", "--model_dir=mirrored"]
    first = run_cli(*argv, "--max_steps=10")
    assert first.returncode == 0, first.stderr
    model_dir = tmp_path / "mirrored"
    assert latest_step(model_dir) == 10
    resumed = run_cli(*argv)
    assert resumed.returncode == 0, resumed.stderr
    assert "(step 10)" in resumed.stderr.split("Resuming from", 1)[1]
    assert "mirrored strategy with 2 replica(s)" in resumed.stderr
    mirrored = read_json(model_dir / "metrics.json")
    assert mirrored["step"] == 20

    config = tiny_config(**SETTINGS)
    single = train.train_and_evaluate(config, str(tmp_path / "single"))
    for key in ("eval_elbo", "eval_rate", "eval_distortion", "eval_iwae"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-4), key

    # The evaluation under the strategy is the single-device evaluation of
    # the checkpoint's weights.
    evaluator = evaluation.Evaluator(
        tfpvae.load(str(model_dir)), kl=mirrored["kl"], k=config.eval_k,
        batch_size=config.eval_batch_size, seed=config.seed)
    results = evaluator(*inputs.eval_arrays(train.load_data(config)))
    for key in ("elbo", "rate", "distortion", "iwae"):
        assert results[key] == pytest.approx(mirrored[f"eval_{key}"],
                                             rel=1e-6), key


@pytest.mark.slow
def test_two_cli_workers_from_tf_config_hold_the_same_variables(tiny_config,
                                                                tmp_path):
    argv = [*TINY_FLAGS, *[f"--{k}={v}" for k, v in SETTINGS.items()],
            "--strategy=multi_worker", "--model_dir=run"]
    cluster = {"worker": [f"localhost:{_free_port()}" for _ in range(2)]}
    model_dir = tmp_path / "run"
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(argv),
         str(tmp_path / f"worker{i}.npz")],
        cwd=tmp_path, env={**cli_env(), "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    try:
        outputs = [w.communicate(timeout=180)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert "multi_worker strategy with 2 replica(s)" in outputs[0]

    variables = []
    for i in range(2):
        with np.load(tmp_path / f"worker{i}.npz") as saved:
            variables.append([saved[f"arr_{j}"] for j in range(len(saved))])
    chief = [v.numpy() for v in
             tfpvae.load(str(model_dir)).trainable_variables]
    assert len(variables[0]) == len(variables[1]) == len(chief) > 0
    for worker0, worker1, saved in zip(*variables, chief):
        np.testing.assert_array_equal(worker0, worker1)
        np.testing.assert_array_equal(worker0, saved)
    # Only the chief (worker 0) wrote the model directory.
    distributed = read_json(model_dir / "metrics.json")
    assert distributed["step"] == SETTINGS["max_steps"]
    assert sorted(os.listdir(tmp_path)) == ["run", "worker0.npz", "worker1.npz"]
    # The global batch of 64 split over the workers: the single-device run.
    single = train.train_and_evaluate(tiny_config(**SETTINGS),
                                      str(tmp_path / "single"))
    assert distributed["eval_elbo"] == pytest.approx(single["eval_elbo"],
                                                     rel=1e-4)
