"""The install is reproducible: the README's commands, .ci/run, setup.cfg and
constraints.txt agree, and the GPU extra resolves to TensorFlow's CUDA build."""

import configparser
import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _setup_requirements() -> dict[str, list[Requirement]]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    groups = {"install": parser["options"]["install_requires"]}
    groups.update(parser["options.extras_require"])
    return {name: [Requirement(line) for line in text.strip().splitlines()
                   if line.strip() and not line.strip().startswith("#")]
            for name, text in groups.items()}


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normal(name)] = Version(version)
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1]
    return [line for line in block.split("```", 1)[0].splitlines() if line]


def test_ci_runs_the_readme_test_command():
    install, test = _quickstart_commands()[1].split(" && ")
    ci = (REPO / ".ci" / "run").read_text().replace(" --quiet", "")
    assert f"python -m {install}" in ci
    assert ci.rstrip().endswith(test)


def test_every_requirement_is_pinned_by_the_constraints_within_its_range():
    pins = _constraints()
    requirements = _setup_requirements()
    for group in ("install", "test"):
        for requirement in requirements[group]:
            name = _normal(requirement.name)
            assert name in pins, f"{name} is not in constraints.txt"
            assert requirement.specifier.contains(pins[name]), (
                f"constraints.txt pins {name}=={pins[name]}, outside "
                f"{requirement} of setup.cfg")
            # A new major release must not enter a fresh install unseen.
            assert requirement.specifier.contains(pins[name]) and not (
                requirement.specifier.contains(Version(
                    f"{pins[name].major + 1}.0"))), (
                f"{requirement} admits the next major release")
    for command in _quickstart_commands()[:2]:
        assert "-c constraints.txt" in command


def test_the_gpu_extra_is_tensorflow_with_cuda_at_the_pinned_version():
    requirements = _setup_requirements()
    (gpu,) = requirements["gpu"]
    (tensorflow,) = [r for r in requirements["install"]
                     if r.name == "tensorflow"]
    assert gpu.name == "tensorflow" and gpu.extras == {"and-cuda"}
    assert gpu.specifier == tensorflow.specifier
    # TensorFlow's own metadata defines the extra and what it installs.
    cuda = [r for r in importlib.metadata.requires("tensorflow")
            if 'extra == "and-cuda"' in r]
    assert any(r.startswith("nvidia-cudnn") for r in cuda)
    assert Version(importlib.metadata.version("tensorflow")) in gpu.specifier
