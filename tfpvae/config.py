"""The training configuration and its absl command-line flags.

`TrainConfig` holds every choice of a training run: the model (the arguments
of `tfpvae.VAE`), the objective, the optimisation, the data and the
bookkeeping. `train.train_and_evaluate(config, model_dir)` runs it.

`define_flags(flag_values)` defines one absl flag per field, with the field's
default and a help text, plus `--model_dir` and `--cpu_devices`, and registers
validators, so that an invalid value or combination stops `python -m
tfpvae.main` with absl's usage error before any work starts. Importing this
module defines nothing; the help text of every flag is available without
running anything:

    from absl import flags
    from tfpvae import config
    flag_values = flags.FlagValues()
    config.define_flags(flag_values)
    print(flag_values.get_help())

The same checks (`RULES`) validate a `TrainConfig` built in Python, so a test
or a notebook gets the same messages as the command line.

Three defaults choose for the user:

* ``--kl=auto`` uses the analytic KL term when the model has one (diagonal
  Gaussian posterior, normal prior) and the Monte Carlo estimate otherwise
  (flows, mixture and VampPriors).
* ``--binarize=auto`` draws fresh binary images every epoch ("dynamic") when
  the likelihood is Bernoulli and the images are not binary, and leaves the
  data alone otherwise; ``--binarize=none`` turns this off (a Bernoulli
  likelihood on grayscale images is then an error).
* ``--jit_compile=auto`` compiles the training step with XLA where it was
  measured faster (`train.resolve_jit_compile`, docs/performance.md);
  ``true`` and ``false`` force it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Sequence

from absl import flags

from tfpvae import data
from tfpvae import flows as flows_lib
from tfpvae import likelihoods as likelihoods_lib
from tfpvae import networks
from tfpvae import priors as priors_lib

#: The valid values of every enum-valued setting.
CHOICES: dict[str, tuple[str, ...]] = {
    "likelihood": tuple(likelihoods_lib.LIKELIHOODS),
    "architecture": tuple(networks.ARCHITECTURES),
    "activation": tuple(sorted(networks.ACTIVATIONS)),
    "prior": tuple(priors_lib.PRIORS),
    "posterior_flow": ("none",) + tuple(flows_lib.FLOWS),
    "kl": ("auto", "analytic", "mc"),
    "optimizer": ("adam", "rmsprop", "sgd"),
    "lr_schedule": ("constant", "cosine"),
    "binarize": ("auto",) + tuple(data.BINARIZE_CHOICES),
    "mixed_precision": ("none", "mixed_bfloat16", "mixed_float16"),
    "strategy": ("default", "mirrored", "multi_worker"),
}

#: Settings that are lists of integers (comma-separated on the command line).
INT_LISTS = ("hidden_units", "flow_hidden_units", "conv_filters", "digits")

#: Settings that are true, false or "auto" (the program decides).
BOOL_OR_AUTO = ("jit_compile",)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; each field is the flag of its name.

    See `define_flags` (or `python -m tfpvae.main --helpfull`) for what each
    field means. Invalid values raise ValueError with the message the
    command line would print.
    """

    # Model.
    latent_dim: int = 20
    likelihood: str = "bernoulli"
    architecture: str = "mlp"
    hidden_units: tuple[int, ...] = (500, 500)
    activation: str = "relu"
    conv_filters: tuple[int, ...] = (32, 64)
    gaussian_scale: str = "learned"
    prior: str = "normal"
    mixture_components: int = 10
    posterior_flow: str = "none"
    flow_layers: int = 4
    flow_hidden_units: tuple[int, ...] = (256, 256)
    flow_context_units: int = 0
    epsilon_std: float = 1.0
    # Objective.
    kl: str = "auto"
    beta: float = 1.0
    kl_warmup_steps: int = 0
    n_samples: int = 1
    # Optimisation.
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_decay_epochs: int = 0
    batch_size: int = 100
    epochs: int = 20
    max_steps: int = 0
    jit_compile: bool | str = "auto"
    mixed_precision: str = "none"
    strategy: str = "default"
    steps_per_execution: int = 10
    seed: int = 0
    # Data.
    dataset: str = "mnist"
    data_dir: str = ""
    digits: tuple[int, ...] = ()
    binarize: str = "auto"
    validation_fraction: float = 0.1
    label_column: str = ""
    standardize: bool = True
    # Evaluation, logging, checkpoints, export.
    eval_every: int = 0
    eval_k: int = 10
    eval_batch_size: int = 500
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    early_stopping_patience: int = 0
    export: bool = False
    plots: bool = True

    def __post_init__(self):
        object.__setattr__(self, "gaussian_scale", str(self.gaussian_scale))
        values = dataclasses.asdict(self)
        for names, rule in RULES:
            message = rule(*(values[n] for n in names))
            if message:
                raise ValueError(message)
        for name in BOOL_OR_AUTO:
            object.__setattr__(self, name, parse_bool_or_auto(getattr(self, name)))
        for name in INT_LISTS:
            object.__setattr__(self, name,
                               tuple(int(v) for v in getattr(self, name)))

    def replace(self, **changes) -> "TrainConfig":
        """Returns a copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as a JSON-serialisable dict (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def to_flags(self) -> list[str]:
        """The settings as `--name=value` lines, usable as a --flagfile."""
        lines = []
        for name, value in self.to_dict().items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list):
                value = ",".join(str(v) for v in value)
            lines.append(f"--{name}={value}")
        return lines


# --------------------------------------------------------------------------
# Validation rules: (setting names, check). A check takes the values of its
# settings and returns an error message, or None when they are valid.

def _one_of(name: str) -> Callable[[str], str | None]:
    def check(value):
        if value not in CHOICES[name]:
            return (f"--{name}={value!r} is not valid; choose one of "
                    f"{', '.join(CHOICES[name])}.")
        return None
    return check


def _at_least(name: str, low: float) -> Callable[[float], str | None]:
    def check(value):
        if not value >= low:
            return f"--{name} must be >= {low:g}; got {value}."
        return None
    return check


def _positive(name: str) -> Callable[[float], str | None]:
    def check(value):
        if not value > 0:
            return f"--{name} must be > 0; got {value}."
        return None
    return check


def _int_list(name: str, low: int) -> Callable[[Sequence], str | None]:
    def check(values):
        for v in values:
            text = str(v).strip()
            if not re.fullmatch(r"[+-]?\d+", text) or int(text) < low:
                return (f"--{name} must be a comma-separated list of integers "
                        f">= {low}; got {','.join(map(str, values))!r}.")
        return None
    return check


def parse_bool_or_auto(value) -> bool | str | None:
    """True, False or "auto" from a bool or its spelling; None if invalid."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    return {"true": True, "t": True, "1": True, "yes": True,
            "false": False, "f": False, "0": False, "no": False}.get(text)


def _bool_or_auto(name: str) -> Callable[[object], str | None]:
    def check(value):
        if parse_bool_or_auto(value) is None:
            return f"--{name} must be true, false or auto; got {value!r}."
        return None
    return check


def _check_gaussian_scale(scale: str) -> str | None:
    if scale in ("learned", "decoder"):
        return None
    try:
        if float(scale) > 0:
            return None
    except ValueError:
        pass
    return (f"--gaussian_scale must be 'learned', 'decoder' or a positive "
            f"number (a fixed scale: squared-error loss); got {scale!r}.")


def _check_seed(seed: int) -> str | None:
    if not 0 <= seed < 2 ** 31:
        return f"--seed must be in [0, 2**31 - 1]; got {seed}."
    return None


def _check_fraction(fraction: float) -> str | None:
    if not 0 < fraction < 1:
        return f"--validation_fraction must be in (0, 1); got {fraction}."
    return None


def _check_kl(kl: str, prior: str, posterior_flow: str) -> str | None:
    if kl != "analytic":
        return None
    reasons = []
    if posterior_flow != "none":
        reasons.append(f"--posterior_flow={posterior_flow}")
    if not priors_lib.PRIORS[prior].has_analytic_kl:
        reasons.append(f"--prior={prior}")
    if reasons:
        return (f"--kl=analytic has no closed form with {' and '.join(reasons)}; "
                f"use --kl=mc (or --kl=auto, which picks it).")
    return None


def _check_realnvp(posterior_flow: str, latent_dim: int) -> str | None:
    if posterior_flow == "realnvp" and latent_dim < 2:
        return (f"--posterior_flow=realnvp needs --latent_dim >= 2; got "
                f"{latent_dim}. Use --posterior_flow=iaf for a 1-D latent.")
    return None


def _check_length(epochs: int, max_steps: int) -> str | None:
    if epochs <= 0 and max_steps <= 0:
        return "Set --epochs or --max_steps to a positive number."
    return None


def _check_lr_decay(lr_schedule: str, lr_decay_epochs: int, epochs: int,
                    max_steps: int) -> str | None:
    if lr_decay_epochs and lr_schedule != "cosine":
        return (f"--lr_decay_epochs={lr_decay_epochs} sets the length of the "
                f"cosine decay; add --lr_schedule=cosine or drop it.")
    if lr_decay_epochs > epochs and not max_steps:
        return (f"--lr_decay_epochs={lr_decay_epochs} is longer than the run "
                f"(--epochs={epochs}); lower it or raise --epochs.")
    return None


def _check_conv(architecture: str, conv_filters: Sequence) -> str | None:
    if architecture == "conv" and not conv_filters:
        return "--architecture=conv needs at least one --conv_filters entry."
    return None


RULES: list[tuple[tuple[str, ...], Callable[..., str | None]]] = [
    *(((name,), _one_of(name)) for name in CHOICES),
    *(((name,), _int_list(name, 1)) for name in
      ("hidden_units", "flow_hidden_units", "conv_filters")),
    (("digits",), _int_list("digits", 0)),
    (("latent_dim",), _at_least("latent_dim", 1)),
    (("mixture_components",), _at_least("mixture_components", 1)),
    (("flow_layers",), _at_least("flow_layers", 1)),
    (("flow_context_units",), _at_least("flow_context_units", 0)),
    (("epsilon_std",), _positive("epsilon_std")),
    (("gaussian_scale",), _check_gaussian_scale),
    (("beta",), _at_least("beta", 0)),
    (("kl_warmup_steps",), _at_least("kl_warmup_steps", 0)),
    (("n_samples",), _at_least("n_samples", 1)),
    (("learning_rate",), _positive("learning_rate")),
    (("lr_decay_epochs",), _at_least("lr_decay_epochs", 0)),
    (("batch_size",), _at_least("batch_size", 1)),
    (("epochs",), _at_least("epochs", 0)),
    (("max_steps",), _at_least("max_steps", 0)),
    (("steps_per_execution",), _at_least("steps_per_execution", 1)),
    (("seed",), _check_seed),
    (("validation_fraction",), _check_fraction),
    *(((name,), _bool_or_auto(name)) for name in BOOL_OR_AUTO),
    (("eval_every",), _at_least("eval_every", 0)),
    (("eval_k",), _at_least("eval_k", 0)),
    (("eval_batch_size",), _at_least("eval_batch_size", 1)),
    (("log_every",), _at_least("log_every", 1)),
    (("checkpoint_every",), _at_least("checkpoint_every", 0)),
    (("keep_checkpoints",), _at_least("keep_checkpoints", 1)),
    (("early_stopping_patience",), _at_least("early_stopping_patience", 0)),
    (("kl", "prior", "posterior_flow"), _check_kl),
    (("posterior_flow", "latent_dim"), _check_realnvp),
    (("epochs", "max_steps"), _check_length),
    (("architecture", "conv_filters"), _check_conv),
    (("lr_schedule", "lr_decay_epochs", "epochs", "max_steps"),
     _check_lr_decay),
]


# --------------------------------------------------------------------------
# Flags.

_HELP = {
    # Model.
    "latent_dim": "Dimension of the latent variable z.",
    "likelihood": "Observation model p(x|z): bernoulli (binary data), "
                  "continuous_bernoulli (grayscale in [0, 1]) or gaussian.",
    "architecture": "Encoder/decoder networks: mlp, or conv (strided "
                    "convolutions; images only).",
    "hidden_units": "Widths of the dense hidden layers of the encoder (the "
                    "decoder mirrors them), e.g. 500,500. With conv they "
                    "follow the convolutions.",
    "activation": "Hidden-layer activation.",
    "conv_filters": "Filters of the stride-2 convolutions (architecture=conv).",
    "gaussian_scale": "Scale of the gaussian likelihood: 'learned' (one per "
                      "data dimension), 'decoder' (predicted per example) or "
                      "a fixed number (0.70710678 makes -log p(x|z) the summed "
                      "squared error plus a constant).",
    "prior": "Prior p(z): normal, mixture (learned mixture of Gaussians) or "
             "vamp (VampPrior; pseudo-inputs start at training examples).",
    "mixture_components": "Components of the mixture prior / pseudo-inputs "
                          "of the VampPrior.",
    "posterior_flow": "Normalizing flow on q(z|x): none, iaf, maf or realnvp.",
    "flow_layers": "Number of flow layers.",
    "flow_hidden_units": "Hidden widths of each flow layer's network.",
    "flow_context_units": "Size of the context vector h(x) the encoder feeds "
                          "the flow (IAF with context); 0 = unconditional.",
    "epsilon_std": "Std of the reparameterisation noise during training; 1 "
                   "is the true ELBO, other values reproduce the old Keras "
                   "tutorial (see tfpvae.model).",
    # Objective.
    "kl": "KL term of the ELBO: analytic (closed form; normal prior and no "
          "flow only), mc (Monte Carlo, any model), or auto: analytic when "
          "the model has one, else mc.",
    "beta": "Weight of the KL term (beta-VAE); 1 is the ELBO.",
    "kl_warmup_steps": "Steps over which the KL weight ramps linearly from 0 "
                       "to --beta; 0 = no warm-up.",
    "n_samples": "Importance samples k of the training bound: 1 trains the "
                 "ELBO, k > 1 the IWAE bound.",
    # Optimisation.
    "optimizer": "Optimizer (tf_keras).",
    "learning_rate": "(Initial) learning rate.",
    "lr_schedule": "constant, or cosine decay to 0 (over the last "
                   "--lr_decay_epochs epochs). The rate follows the flags "
                   "also when a run is resumed with other ones.",
    "lr_decay_epochs": "With --lr_schedule=cosine: the rate is constant, then "
                       "decays over the last this many epochs of the run (0: "
                       "over the whole run). Resume a run with a larger "
                       "--epochs and this to anneal it.",
    "batch_size": "Global batch size (summed over replicas).",
    "epochs": "Training epochs; ignored when --max_steps > 0.",
    "max_steps": "Total training steps; overrides --epochs when > 0. A run "
                 "resumed with a larger value trains on.",
    "jit_compile": "Compile the training step with XLA: true, false, or auto: "
                   "on where python -m tfpvae.benchmark measured it faster "
                   "(MLP networks trained on the ELBO, with or without a "
                   "flow posterior: ~1.3x on CPU), off where it measured "
                   "slower (conv networks, IWAE with --n_samples > 1, "
                   "mixed_bfloat16, whose AMX matmuls XLA does not use). "
                   "If XLA cannot compile the step, training continues "
                   "without it after one log line. See docs/performance.md.",
    "mixed_precision": "Compute the networks in reduced precision "
                       "(distributions stay float32); mixed_float16 adds "
                       "dynamic loss scaling.",
    "steps_per_execution": "Training steps per call of the compiled "
                           "training loop: the steps between two "
                           "evaluations, logs or checkpoints run in calls of "
                           "up to this many steps, which saves the Python "
                           "and input-pipeline overhead of every step (as "
                           "Keras' steps_per_execution). The same updates "
                           "as 1; 1 = one step per call.",
    "strategy": "tf.distribute strategy: default (one device), mirrored "
                "(all local devices; see --cpu_devices) or multi_worker "
                "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG).",
    "seed": "Seed of the initialisation, the data order and every random "
            "draw; runs with the same seed and flags give the same losses "
            "on CPU.",
    # Data.
    "dataset": "tensorflow_datasets name (mnist, binarized_mnist, "
               "fashion_mnist, ...), sklearn_digits (8x8 digits, offline), "
               "or a local .npz/.npy/.csv/.amat file or MNIST IDX folder.",
    "data_dir": "tensorflow_datasets data directory ('' = tfds default).",
    "digits": "Keep only these labels, e.g. 1,8 ('' = all).",
    "binarize": "auto (dynamic for a bernoulli likelihood on non-binary "
                "images, else none), none, static (binarize once) or dynamic "
                "(fresh binary sample of each training batch every epoch).",
    "validation_fraction": "Fraction of the training data held out for "
                           "evaluation when the dataset has no validation "
                           "split.",
    "label_column": "Column of a .csv dataset holding labels ('' = none).",
    "standardize": "Standardise tabular data with the training mean and std.",
    # Evaluation, logging, checkpoints, export.
    "eval_every": "Evaluate on the held-out split every this many steps; "
                  "0 = at the end of every epoch. Training always ends with "
                  "an evaluation.",
    "eval_k": "Importance samples of the evaluation IWAE bound on log p(x); "
              "0 = ELBO only.",
    "eval_batch_size": "Batch size of the evaluation.",
    "log_every": "Log progress and TensorBoard training scalars every this "
                 "many steps.",
    "checkpoint_every": "Save a checkpoint every this many steps (one is "
                        "also saved at every evaluation, at the end and on "
                        "SIGINT/SIGTERM); 0 = only then.",
    "keep_checkpoints": "Number of most recent checkpoints kept.",
    "early_stopping_patience": "Stop after this many evaluations without a "
                               "better held-out bound (IWAE_eval_k, or the "
                               "ELBO when --eval_k=0); 0 = never. The best "
                               "model is always kept in <model_dir>/best.",
    "plots": "Draw the figures of the trained model (loss curves, latent "
             "space, manifolds, traversals, reconstructions, prior samples) "
             "into <model_dir>/plots at the end of training, from the "
             "checkpoint with the best held-out bound; redraw them any "
             "time with python -m tfpvae.plot.",
    "export": "Also export a SavedModel (encode/decode/sample signatures) "
              "of the checkpoint with the best held-out bound to "
              "<model_dir>/saved_model.",
}

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per `TrainConfig` field, and the run-level flags.

    Enum settings become `DEFINE_enum` flags (absl names the valid choices
    in its error), integer lists `DEFINE_list` flags; every rule of `RULES`
    becomes a validator.

    Args:
        flag_values: Where to define the flags (absl's global FLAGS by
            default; a fresh `flags.FlagValues()` for tests and docs).
    """
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        name, default = field.name, getattr(defaults, field.name)
        help_text = _HELP[name]
        if name in BOOL_OR_AUTO:
            flags.DEFINE(_BoolOrAutoParser(), name, default, help_text,
                         flag_values=flag_values)
        elif name in CHOICES:
            flags.DEFINE_enum(name, default, CHOICES[name], help_text,
                              flag_values=flag_values)
        elif name in INT_LISTS:
            flags.DEFINE_list(name, [str(v) for v in default], help_text,
                              flag_values=flag_values)
        else:
            _DEFINE[type(default)](name, default, help_text,
                                   flag_values=flag_values)
    flags.DEFINE_string(
        "model_dir", "",
        "Directory of the run: checkpoints, TensorBoard logs, metrics, "
        "history, flags. Running the same command again resumes from its "
        "latest checkpoint; a directory holding a different model is "
        "refused. Default: runs/<dataset>, e.g. runs/mnist.",
        flag_values=flag_values)
    flags.DEFINE_integer(
        "cpu_devices", 0,
        "Split the CPU into this many logical devices (for trying "
        "--strategy=mirrored without GPUs); 0 = leave TensorFlow's default.",
        lower_bound=0, flag_values=flag_values)
    for names, rule in RULES:
        if names[0] in CHOICES and len(names) == 1:
            continue  # DEFINE_enum checks these while parsing.
        flags.register_multi_flags_validator(
            list(names), _flag_validator(names, rule), flag_values=flag_values)


class _BoolOrAutoParser(flags.ArgumentParser):
    """Parses a flag that is true, false (absl's spellings) or auto."""

    syntactic_help = "true, false or auto"

    def parse(self, argument):
        value = parse_bool_or_auto(argument)
        if value is None:
            raise ValueError(f"must be true, false or auto; got {argument!r}")
        return value

    def flag_type(self):
        return "bool or auto"


def _flag_validator(names, rule):
    def validate(values):
        message = rule(*(values[n] for n in names))
        if message:
            raise flags.ValidationError(message)
        return True
    return validate


def from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """Builds the `TrainConfig` from parsed flags."""
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = flag_values[field.name].value
        if field.name in INT_LISTS:
            value = tuple(int(v) for v in value)
        values[field.name] = value
    return TrainConfig(**values)


def default_model_dir(dataset: str) -> str:
    """The default --model_dir for a dataset: runs/<dataset name>.

    A local path contributes its file or folder name without the extension
    (runs/binarized_mnist), a tfds name itself (runs/mnist,
    runs/emnist_letters).
    """
    name = dataset.rstrip("/\\")
    if os.path.exists(name):
        name = re.sub(r"\.(npz|npy|csv|amat|gz)$", "", os.path.basename(name),
                      flags=re.IGNORECASE)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "run"
    return os.path.join("runs", name)
