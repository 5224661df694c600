"""Run directories written by tfpvae 0.1.0 still resume and evaluate.

tests/fixtures/v0_1 holds three tiny runs made by 0.1.0 (commit 6673093,
tests/fixtures/make_v0_1_runs.py) at step 20 of 40, and what 0.1.0 computed
from them: the metrics and history of resuming each to step 40, and the
evaluation of its latest checkpoint. Resuming is deterministic on CPU, so
the current code must reproduce the resumed numbers; `tfpvae.evaluate`'s
run must agree within its standard error.
"""

import json
import shutil
from pathlib import Path

import pytest
from absl import flags

from tfpvae import evaluate
from tfpvae import train
from tfpvae.config import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _config(name, **changes):
    settings = {key: tuple(value) if isinstance(value, list) else value
                for key, value in EXPECTED[name]["config"].items()}
    return TrainConfig(**{**settings, **changes})


def _copy(name, tmp_path) -> str:
    model_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, model_dir)
    return str(model_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_0_1_run_resumes_to_the_same_numbers(name, tmp_path):
    model_dir = _copy(name, tmp_path)
    metrics = train.train_and_evaluate(_config(name, max_steps=40), model_dir)
    expected = EXPECTED[name]
    for key, value in expected["resumed"].items():
        if isinstance(value, str):
            assert metrics[key] == value, key
        else:
            assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    with open(Path(model_dir) / "history.jsonl") as f:
        history = [json.loads(line) for line in f]
    assert [r["step"] for r in history] == [r["step"] for r in expected["history"]]
    for record, old in zip(history, expected["history"]):
        for key, value in old.items():
            if value is None:
                assert record[key] is None, (record["step"], key)
            else:
                assert record[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (
                    record["step"], key)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_0_1_run_evaluates_to_the_same_numbers(name, tmp_path):
    model_dir = _copy(name, tmp_path)
    # `python -m tfpvae.evaluate` in this process (its run(), without a
    # TensorFlow start-up per case).
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", f"--model_dir={model_dir}", "--k=20",
                 "--max_examples=200", "--elbo_samples=10"])
    evaluate.run(flag_values)
    results = json.loads((Path(model_dir) / "evaluation.json").read_text())
    old = EXPECTED[name]["evaluation"]
    for key in ("num_examples", "num_dims", "latent_dim", "k", "active_units"):
        assert results[key] == old[key], key
    # A different seed stream draws other samples: equal within noise.
    tolerance = 4 * old["nll_nats_stderr"] + 0.05
    assert results["nll_nats"] == pytest.approx(old["nll_nats"], abs=tolerance)
    assert results["elbo"] == pytest.approx(old["elbo"], abs=tolerance)
    assert results["rate"] == pytest.approx(old["rate"], rel=0.2, abs=0.1)
