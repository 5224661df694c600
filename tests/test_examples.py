"""Every script in examples/ runs for a few steps on the real data in
../shared/data, in this process (no TensorFlow start-up per script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import MNIST_IDX, REPO

EXAMPLES = REPO / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def load_example(name: str):
    """Imports examples/<name> as a module (its main() is not run)."""
    path = EXAMPLES / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mnist() -> str:
    if not MNIST_IDX.exists():
        pytest.skip(f"real data {MNIST_IDX} is absent (it lives beside the "
                    f"checkout in ../shared/data)")
    return str(MNIST_IDX)


@pytest.fixture(scope="module")
def trained_dir(mnist, tmp_path_factory) -> str:
    """A model directory trained by train_from_python.py --how=trainer."""
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    model = load_example("train_from_python.py").main([
        "--how=trainer", f"--dataset={mnist}", "--steps=3", "--latent_dim=3",
        "--eval_k=2", f"--model_dir={model_dir}", "--jit_compile=false"])
    assert model.data_shape == (28, 28, 1)
    return str(model_dir)


def test_every_example_is_tested():
    tested = {"train_from_python.py", "sample_from_checkpoint.py",
              "custom_flow.py", "explore_latent_space.py", "tabular_vae.py"}
    assert set(SCRIPTS) == tested, "add a test for each new example"


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_train_from_python_own_loop(mnist):
    model = load_example("train_from_python.py").main([
        f"--dataset={mnist}", "--steps=3", "--latent_dim=2", "--eval_k=2"])
    assert model.data_shape == (28, 28, 1)


def test_train_from_python_trainer(trained_dir):
    assert (Path(trained_dir) / "metrics.json").exists()


def test_sample_from_checkpoint(trained_dir, tmp_path):
    output = tmp_path / "samples.png"
    load_example("sample_from_checkpoint.py").main([
        f"--model_dir={trained_dir}", "--n=6", f"--output={output}"])
    assert output.stat().st_size > 0


@pytest.mark.parametrize("flow", ["module", "bijector"])
def test_custom_flow_variables_train(flow, mnist):
    moved = load_example("custom_flow.py").main([
        f"--flow={flow}", f"--dataset={mnist}", "--steps=3", "--latent_dim=2",
        "--context_units=4"])
    assert moved > 0


def test_explore_latent_space(trained_dir, tmp_path):
    paths = load_example("explore_latent_space.py").main([
        f"--model_dir={trained_dir}", f"--output_dir={tmp_path}", "--a=0",
        "--b=1", "--steps=4", "--max_points=100"])
    names = sorted(Path(p).name for p in paths)
    assert names[:2] == ["interpolation.png", "latent_path.png"]
    assert len(names) == 4  # Two traversals.


def test_tabular_vae(tmp_path):
    metrics = load_example("tabular_vae.py").main([
        "--steps=3", "--eval_k=2", f"--output_dir={tmp_path}",
        "--jit_compile=false"])
    assert metrics["dataset"]["kind"] == "tabular"
    assert (tmp_path / "latent_space.png").exists()


def test_tabular_vae_conditional(tmp_path, capsys):
    metrics = load_example("tabular_vae.py").main([
        "--conditional", "--steps=3", "--eval_k=2", f"--output_dir={tmp_path}",
        "--jit_compile=false"])
    assert metrics["model_config"]["num_classes"] == 2
    printed = capsys.readouterr().out
    assert "of 1000 rows drawn for it" in printed

