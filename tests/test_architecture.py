"""The structure of the package, checked with `ast` and the import statements:

* no function of the trainer (tfpvae/train/) is longer than 80 lines;
* the evaluation and plotting programs never import the trainer, and the
  trainer never imports the figures or the export (directly or through
  another module of the package);
* a model hyperparameter is declared once, as a field of
  `tfpvae.config.ModelConfig`: no other module of the package names it in a
  string, a dict key or a parameter (uses such as `settings.prior` are
  attribute accesses and are fine).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tfpvae.config import ModelConfig

PACKAGE = Path(__file__).resolve().parents[1] / "tfpvae"
MAX_TRAINER_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The tfpvae modules that module `name` imports."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}"
                                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found


def reachable(start: str) -> set[str]:
    """Every tfpvae module that `start` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for target in imports_of(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_import_graph_is_read():
    assert "tfpvae.train.loop" in reachable("tfpvae.main")
    assert "tfpvae.figures" in reachable("tfpvae.main")
    assert "tfpvae.evaluation" in reachable("tfpvae.evaluate")


TRAINER = sorted(m for m in MODULES if m.startswith("tfpvae.train"))


@pytest.mark.parametrize("program", ["tfpvae.evaluate", "tfpvae.plot",
                                     "tfpvae.evaluation", "tfpvae.figures"])
def test_evaluation_and_plots_do_not_import_the_trainer(program):
    trainer = reachable(program) & set(TRAINER)
    assert not trainer, f"{program} imports the trainer: {sorted(trainer)}"


@pytest.mark.parametrize("module", TRAINER)
def test_the_trainer_does_not_import_figures_or_export(module):
    banned = reachable(module) & {"tfpvae.figures", "tfpvae.plots",
                                  "tfpvae.export"}
    assert not banned, f"{module} imports {sorted(banned)}"


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("module", TRAINER)
def test_no_trainer_function_is_longer_than_80_lines(module):
    tree = ast.parse(MODULES[module].read_text())
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for f in functions(tree)
            if f.end_lineno - f.lineno + 1 > MAX_TRAINER_FUNCTION_LINES]
    assert not long, f"{module}: {', '.join(long)}"


SETTINGS = {f.name for f in dataclasses.fields(ModelConfig)}

#: Modules that build models or runs from the settings: none of their
#: functions may take a model setting as a parameter of its own. (The
#: building blocks - networks, priors, flows, likelihoods, objectives -
#: take sizes as arguments of their own API.)
BUILDERS = ("tfpvae.models", "tfpvae.train", "tfpvae.main", "tfpvae.inputs",
            "tfpvae.evaluation", "tfpvae.run_dir", "tfpvae.evaluate")

#: Arguments that take more than the setting's flag form in Python (a flow
#: object, a float scale, the positional latent_dim), declared by the VAE
#: families and the parts they share.
PYTHON_FORMS = {"latent_dim", "posterior_flow", "gaussian_scale"}
FAMILY_MODULES = ("tfpvae.models.vae", "tfpvae.models.hierarchy",
                  "tfpvae.models.parts")

#: The functions that write model_config.json with those Python forms.
CONFIG_WRITERS = {(m, f) for m in FAMILY_MODULES
                  for f in ("get_config", "config_defaults")}


def _declarations(module: str, function: ast.AST) -> list[str]:
    """Model settings that `function` declares again: as its parameters, or
    as keys of a dict it builds."""
    found = []
    arguments = function.args.args + function.args.kwonlyargs
    if module.startswith(BUILDERS):
        found += [f"parameter {a.arg} of {function.name}" for a in arguments
                  if a.arg in SETTINGS and not (
                      module in FAMILY_MODULES and a.arg in PYTHON_FORMS)]
    if not module.startswith(BUILDERS) or (module, function.name) in CONFIG_WRITERS:
        return found
    for node in ast.walk(function):
        if isinstance(node, ast.Dict):
            found += [f"dict key {k.value!r} in {function.name}"
                      for k in node.keys if isinstance(k, ast.Constant)
                      and k.value in SETTINGS]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "dict"):
            found += [f"dict key {k.arg!r} in {function.name}"
                      for k in node.keywords if k.arg in SETTINGS]
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES
                                          if m != "tfpvae.config"))
def test_model_hyperparameters_are_declared_only_in_config(module):
    tree = ast.parse(MODULES[module].read_text())
    named = [d for f in functions(tree) for d in _declarations(module, f)]
    assert not named, (f"{module} declares model settings again: "
                       f"{', '.join(named)}; read them from the ModelConfig "
                       f"fields in tfpvae/config.py")


def test_the_check_finds_a_setting_declared_again():
    tree = ast.parse("def build(config, prior='normal'):\n"
                     "    return dict(hidden_units=config.hidden_units)\n")
    (function,) = functions(tree)
    assert _declarations("tfpvae.models.new", function) == [
        "parameter prior of build", "dict key 'hidden_units' in build"]
