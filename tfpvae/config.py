"""Every setting of tfpvae, written once: its default, help text and checks.

A setting is one field of `ModelConfig` (the model's hyperparameters, the
arguments of `tfpvae.VAE`) or of `TrainConfig` (all of `ModelConfig`, plus
the objective, the optimisation, the data, the evaluation and the
bookkeeping of a run), declared with `setting(default, help, kind=...)`.
Everything else derives from the fields:

* `define_flags(flag_values)` defines one absl flag per field (enum
  settings as `DEFINE_enum`, integer lists as `DEFINE_list`), plus
  `--model_dir` and `--cpu_devices`, and registers the checks as
  validators, so that an invalid value or combination stops `python -m
  tfpvae.main` with absl's usage error before any work starts;
* building a `TrainConfig` or `ModelConfig` in Python runs the same checks
  with the same one-line messages;
* `model_config.json` holds the `ModelConfig` fields of a model, and the
  model is built from them (`tfpvae.models.build_model`);
* docs/cli.md and the argument table of `tfpvae.VAE` in docs/api.md are
  generated from the fields (`python tools/docs_reference.py`).

Importing this module defines no flag; the help of every flag is available
without running anything:

    from absl import flags
    from tfpvae import config
    flag_values = flags.FlagValues()
    config.define_flags(flag_values)
    print(flag_values.get_help())

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
from typing import Any, Callable, Sequence

from absl import flags

from tfpvae import data
from tfpvae import flows as flows_lib
from tfpvae import likelihoods as likelihoods_lib
from tfpvae import networks
from tfpvae import penalties
from tfpvae import priors as priors_lib

#: A check of one value: returns an error message, or None when it is valid.
Check = Callable[[Any], "str | None"]

#: How a setting is typed on the command line and stored.
KINDS = ("int", "float", "str", "bool", "enum", "ints", "sizes",
         "bool_or_auto")


def setting(default, help: str, *, kind: str, choices: Sequence[str] = (),
            low: float | None = None, above: float | None = None,
            check: Check | None = None):
    """Declares a setting: a dataclass field with its flag's metadata.

    Args:
        default: The default value.
        help: The flag's help text (and the docs' description).
        kind: One of `KINDS`: "enum" takes one of `choices`; "ints" is a
            comma-separated list of integers (a tuple); "sizes" is one
            integer or several (an int, or a tuple of ints);
            "bool_or_auto" is true, false or "auto".
        choices: The valid values of an "enum" setting.
        low: Smallest valid value (of each entry, for lists).
        above: The value must be greater than this.
        check: Any other check of the value alone.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown setting kind {kind!r}; choose one of {KINDS}.")
    return dataclasses.field(default=default, metadata=dict(
        help=help, kind=kind, choices=tuple(choices), low=low, above=above,
        check=check))


# --------------------------------------------------------------------------
# Checks of single values.

def parse_bool_or_auto(value) -> bool | str | None:
    """True, False or "auto" from a bool or its spelling; None if invalid."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    return {"true": True, "t": True, "1": True, "yes": True,
            "false": False, "f": False, "0": False, "no": False}.get(text)


def _check_gaussian_scale(scale) -> str | None:
    if scale in ("learned", "decoder"):
        return None
    try:
        if float(scale) > 0:
            return None
    except (TypeError, ValueError):
        pass
    return (f"--gaussian_scale must be 'learned', 'decoder' or a positive "
            f"number (a fixed scale: squared-error loss); got {scale!r}.")


def _check_layers(latent_dim) -> str | None:
    sizes = latent_dim if isinstance(latent_dim, (list, tuple)) else [latent_dim]
    if len(sizes) > 9:
        return (f"--latent_dim has {len(sizes)} layers; tfpvae stacks at most "
                f"9 latent layers.")
    return None


def _check_seed(seed: int) -> str | None:
    if not 0 <= seed < 2 ** 31:
        return f"--seed must be in [0, 2**31 - 1]; got {seed}."
    return None


def _check_fraction(fraction: float) -> str | None:
    if not 0 < fraction < 1:
        return f"--validation_fraction must be in (0, 1); got {fraction}."
    return None


def _value_checks(field: dataclasses.Field) -> list[Check]:
    """The checks that the metadata of `field` declares."""
    meta, name = field.metadata, field.name
    checks = []
    if meta["kind"] == "enum":
        def one_of(value, choices=meta["choices"]):
            if value not in choices:
                return (f"--{name}={value!r} is not valid; choose one of "
                        f"{', '.join(choices)}.")
            return None
        checks.append(one_of)
    if meta["kind"] in ("ints", "sizes"):
        low = int(meta["low"] or 0)

        def int_list(values, low=low):
            values = values if isinstance(values, (list, tuple)) else [values]
            for v in values:
                text = str(v).strip()
                if not re.fullmatch(r"[+-]?\d+", text) or int(text) < low:
                    return (f"--{name} must be a comma-separated list of "
                            f"integers >= {low}; got "
                            f"{','.join(map(str, values))!r}.")
            if meta["kind"] == "sizes" and not values:
                return f"--{name} needs at least one size."
            return None
        checks.append(int_list)
    elif meta["low"] is not None:
        checks.append(lambda value, low=meta["low"]: (
            None if value >= low else f"--{name} must be >= {low:g}; got {value}."))
    if meta["above"] is not None:
        checks.append(lambda value, above=meta["above"]: (
            None if value > above else f"--{name} must be > {above:g}; got {value}."))
    if meta["kind"] == "bool_or_auto":
        checks.append(lambda value: (
            None if parse_bool_or_auto(value) is not None
            else f"--{name} must be true, false or auto; got {value!r}."))
    if meta["check"] is not None:
        checks.append(meta["check"])
    return checks


def _normalise(field: dataclasses.Field, value):
    """The stored form of a valid value: tuples of ints for lists, an int
    for one size, True/False/"auto" for bool_or_auto."""
    kind = field.metadata["kind"]
    if kind == "ints":
        return tuple(int(v) for v in value)
    if kind == "sizes":
        values = value if isinstance(value, (list, tuple)) else [value]
        values = tuple(int(v) for v in values)
        return values[0] if len(values) == 1 else values
    if kind == "bool_or_auto":
        return parse_bool_or_auto(value)
    if kind == "str":
        return str(value)
    return value


class _Settings:
    """What `ModelConfig` and `TrainConfig` share: checks and conversions."""

    #: Checks of several settings together: (setting names, check).
    RULES: tuple = ()

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            for check in _value_checks(field):
                message = check(value)
                if message:
                    raise ValueError(message)
            object.__setattr__(self, field.name, _normalise(field, value))
        for names, rule in self.RULES:
            message = rule(*(getattr(self, n) for n in names))
            if message:
                raise ValueError(message)

    def replace(self, **changes):
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
# Checks of several settings.

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


def _check_realnvp(posterior_flow: str, latent_dim) -> str | None:
    sizes = latent_dim if isinstance(latent_dim, tuple) else (latent_dim,)
    if posterior_flow == "realnvp" and sizes[-1] < 2:
        return (f"--posterior_flow=realnvp needs --latent_dim >= 2; got "
                f"{latent_dim}. Use --posterior_flow=iaf for a 1-D latent.")
    return None


def _check_conv(architecture: str, conv_filters: Sequence) -> str | None:
    if architecture in ("conv", "resnet") and not conv_filters:
        return (f"--architecture={architecture} needs at least one "
                f"--conv_filters entry.")
    return None


def _check_epsilon(epsilon_std: float, latent_dim) -> str | None:
    if epsilon_std != 1.0 and isinstance(latent_dim, tuple):
        return ("--epsilon_std (the old Keras tutorial's noise scale) applies "
                "to one latent layer; drop it or use one --latent_dim size.")
    return None


def _check_dreg(gradient_estimator: str, n_samples: int,
                posterior_flow: str, latent_dim) -> str | None:
    if gradient_estimator != "dreg":
        return None
    if isinstance(latent_dim, tuple):
        return ("--gradient_estimator=dreg needs one latent layer (one "
                "--latent_dim size); use --gradient_estimator=standard.")
    if n_samples < 2:
        return ("--gradient_estimator=dreg is an estimator of the IWAE bound's "
                "gradient; add --n_samples=k with k > 1.")
    if posterior_flow != "none":
        return ("--gradient_estimator=dreg needs a diagonal Gaussian "
                "posterior; drop --posterior_flow or use "
                "--gradient_estimator=standard.")
    return None


def _check_labels_use(conditional: bool, semi_supervised: bool,
                      n_samples: int, prior: str) -> str | None:
    if conditional and semi_supervised:
        return ("--semi_supervised is already conditional on the labels; drop "
                "--conditional.")
    if semi_supervised and n_samples != 1:
        return ("--semi_supervised trains on its ELBO; drop --n_samples "
                "(or set it to 1).")
    if (conditional or semi_supervised) and prior == "vamp":
        return ("The VampPrior's pseudo-inputs carry no labels; use "
                "--prior=normal or mixture with a conditional model.")
    return None


def _check_objective(objective: str, latent_dim, posterior_flow: str,
                     semi_supervised: bool, n_samples: int) -> str | None:
    if objective == "elbo":
        return None
    flag = f"--objective={objective}"
    if isinstance(latent_dim, tuple):
        return (f"{flag} penalises one latent layer; use one --latent_dim "
                f"size (or --objective=elbo).")
    if posterior_flow != "none":
        return (f"{flag} needs a diagonal Gaussian posterior; drop "
                f"--posterior_flow (or use --objective=elbo).")
    if semi_supervised:
        return (f"--semi_supervised trains on its own objective; drop "
                f"{flag} (or --semi_supervised).")
    if n_samples != 1:
        return (f"{flag} adds its penalty to the ELBO; drop --n_samples (or "
                f"set it to 1).")
    return None


def _check_discriminator(objective: str,
                         discriminator_learning_rate: float) -> str | None:
    if objective == "factor_vae" and not discriminator_learning_rate > 0:
        return ("--objective=factor_vae trains a discriminator: set "
                "--discriminator_learning_rate (Kim & Mnih 2018: 1e-4).")
    return None


def _check_tc_batch(objective: str, batch_size: int) -> str | None:
    if objective in ("beta_tcvae", "factor_vae") and batch_size < 2:
        return (f"--objective={objective} estimates the total correlation "
                f"from the other examples of a batch; use --batch_size >= 2.")
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


# --------------------------------------------------------------------------
# The settings.

_ACTIVATIONS = tuple(sorted(networks.ACTIVATIONS))


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Settings):
    """The hyperparameters of a model: the arguments of `tfpvae.VAE`.

    Each field is also the flag of its name; invalid values raise
    ValueError with the message the command line would print.
    """

    latent_dim: int | tuple[int, ...] = setting(
        20, "Dimension of the latent variable z; several comma-separated "
        "sizes stack latent layers, the one nearest the data first (e.g. "
        "64,32; see --hierarchy).", kind="sizes", low=1,
        check=_check_layers)
    hierarchy: str = setting(
        "ladder", "How several latent layers (--latent_dim=64,32) connect: "
        "ladder (Sonderby et al. 2016: a bottom-up pass, then top-down "
        "inference that shares the generative path, each posterior the "
        "precision-weighted product of the two Gaussians), bottom_up (Burda "
        "et al. 2016: q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1)) or tomczak "
        "(Tomczak & Welling 2018: q(z2|x) q(z1|x,z2), p(x|z1,z2)). Ignored "
        "for one layer.", kind="enum", choices=("ladder", "bottom_up",
                                                "tomczak"))
    latent_hidden_units: tuple[int, ...] = setting(
        (300,), "Hidden widths of the networks between latent layers (with "
        "several --latent_dim sizes).", kind="ints", low=1)
    likelihood: str = setting(
        "bernoulli", "Observation model p(x|z): bernoulli (binary data), "
        "continuous_bernoulli (grayscale in [0, 1]) or gaussian.",
        kind="enum", choices=likelihoods_lib.LIKELIHOODS)
    architecture: str = setting(
        "mlp", "Encoder/decoder networks: mlp, conv (strided "
        "convolutions; images only) or resnet (residual convolutional "
        "blocks at each resolution; images only).", kind="enum",
        choices=networks.ARCHITECTURES)
    hidden_units: tuple[int, ...] = setting(
        (500, 500), "Widths of the dense hidden layers of the encoder (the "
        "decoder mirrors them), e.g. 500,500. With conv they follow the "
        "convolutions.", kind="ints", low=1)
    activation: str = setting(
        "relu", "Hidden-layer activation.", kind="enum", choices=_ACTIVATIONS)
    conv_filters: tuple[int, ...] = setting(
        (32, 64), "Filters of the stride-2 convolutions (architecture=conv), "
        "one resolution each (architecture=resnet).", kind="ints", low=1)
    resnet_blocks: int = setting(
        2, "Residual blocks (two 3x3 convolutions and a skip) per resolution "
        "(architecture=resnet).", kind="int", low=1)
    gaussian_scale: str = setting(
        "learned", "Scale of the gaussian likelihood: 'learned' (one per "
        "data dimension), 'decoder' (predicted per example) or a fixed "
        "number (0.70710678 makes -log p(x|z) the summed squared error plus "
        "a constant).", kind="str", check=_check_gaussian_scale)
    prior: str = setting(
        "normal", "Prior p(z): normal, mixture (learned mixture of "
        "Gaussians) or vamp (VampPrior; pseudo-inputs start at training "
        "examples).", kind="enum", choices=priors_lib.PRIORS)
    mixture_components: int = setting(
        10, "Components of the mixture prior / pseudo-inputs of the "
        "VampPrior.", kind="int", low=1)
    posterior_flow: str = setting(
        "none", "Normalizing flow on q(z|x): none, iaf, maf or realnvp.",
        kind="enum", choices=("none", *flows_lib.FLOWS))
    flow_layers: int = setting(
        4, "Number of flow layers.", kind="int", low=1)
    flow_hidden_units: tuple[int, ...] = setting(
        (256, 256), "Hidden widths of each flow layer's network.",
        kind="ints", low=1)
    flow_context_units: int = setting(
        0, "Size of the context vector h(x) the encoder feeds the flow (IAF "
        "with context); 0 = unconditional.", kind="int", low=0)
    epsilon_std: float = setting(
        1.0, "Std of the reparameterisation noise during training; 1 is the "
        "true ELBO, other values reproduce the old Keras tutorial (see "
        "tfpvae.models.vae).", kind="float", above=0)

    RULES = (
        (("posterior_flow", "latent_dim"), _check_realnvp),
        (("architecture", "conv_filters"), _check_conv),
        (("epsilon_std", "latent_dim"), _check_epsilon),
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig(ModelConfig):
    """Every setting of a training run; each field is the flag of its name.

    The model's fields come first (`ModelConfig`). See `define_flags` (or
    `python -m tfpvae.main --helpfull`) for what each field means.
    """

    # Objective.
    kl: str = setting(
        "auto", "KL term of the ELBO: analytic (closed form; normal prior "
        "and no flow only), mc (Monte Carlo, any model), or auto: analytic "
        "when the model has one, else mc.", kind="enum",
        choices=("auto", "analytic", "mc"))
    beta: float = setting(
        1.0, "Weight of the KL term (beta-VAE); 1 is the ELBO.", kind="float",
        low=0)
    kl_warmup_steps: int = setting(
        0, "Steps over which the KL weight ramps linearly from 0 to --beta; "
        "0 = no warm-up.", kind="int", low=0)
    n_samples: int = setting(
        1, "Importance samples k of the training bound: 1 trains the ELBO, "
        "k > 1 the IWAE bound.", kind="int", low=1)
    gradient_estimator: str = setting(
        "standard", "Gradient of the IWAE bound (--n_samples > 1): standard "
        "(reparameterised), or dreg (doubly reparameterised, Tucker et al. "
        "2019: lower-variance encoder gradients as k grows; one latent "
        "layer, no flow).", kind="enum", choices=("standard", "dreg"))
    free_bits: float = setting(
        0.0, "Free bits (Kingma et al. 2016): nats of rate per latent layer "
        "that training does not penalise (each layer's rate counts as "
        "max(free_bits, its batch mean)); 0 = off. The reported ELBO and "
        "NLL stay the true bounds.", kind="float", low=0)
    objective: str = setting(
        "elbo", "Training objective: elbo (the ELBO; the beta-VAE objective "
        "with --beta, IWAE with --n_samples), or a disentangling one, on "
        "one diagonal Gaussian latent layer (tfpvae.penalties): beta_tcvae "
        "(Chen et al. 2018: ELBO - (--tc_weight - 1) * total correlation), "
        "factor_vae (Kim & Mnih 2018: ELBO - --tc_weight * a "
        "discriminator's estimate of the TC), dip_vae_i / dip_vae_ii "
        "(Kumar et al. 2018: ELBO - a penalty on the covariance of q(z)), "
        "info_vae (Zhao et al. 2017: -distortion - --beta * rate - "
        "--mmd_weight * MMD(q(z), p(z)); --beta=0 is WAE-MMD, Tolstikhin et "
        "al. 2018) or capacity (Burgess et al. 2018: -distortion - "
        "--capacity_weight * |rate - C|, C rising to --capacity_max).",
        kind="enum", choices=tuple(penalties.OBJECTIVES))
    tc_weight: float = setting(
        6.0, "Weight of the total correlation: beta of beta_tcvae (Chen et "
        "al. 2018, whose figures use 6; the TC term counts beta times, the "
        "rest of the KL once) and gamma of factor_vae (Kim & Mnih 2018 "
        "sweep 10-100 on dSprites: set it).", kind="float", low=0)
    tc_estimator: str = setting(
        "mss", "Minibatch estimator of the total correlation of "
        "beta_tcvae (Chen et al. 2018): mss (stratified sampling, unbiased "
        "for q(z) in every batch) or mws (weighted sampling, Chen et al.'s "
        "main estimator; biased when the dataset is much larger than the "
        "batch).", kind="enum", choices=penalties.TC_ESTIMATORS)
    discriminator_learning_rate: float = setting(
        0.0, "With --objective=factor_vae: learning rate of the "
        "discriminator's Adam (Kim & Mnih 2018: 1e-4, beta1 0.5); must be "
        "set.", kind="float", low=0)
    discriminator_hidden_units: tuple[int, ...] = setting(
        (1000,) * 6, "With --objective=factor_vae: hidden widths of the "
        "discriminator MLP, leaky ReLU (Kim & Mnih 2018: 6 layers of 1000).",
        kind="ints", low=1)
    dip_lambda_od: float = setting(
        10.0, "DIP-VAE (Kumar et al. 2018): weight lambda_od of the squared "
        "off-diagonal covariances of q(z).", kind="float", low=0)
    dip_lambda_d: float = setting(
        0.0, "DIP-VAE (Kumar et al. 2018): weight lambda_d of the squared "
        "distance of the variances from 1; 0 = the paper's choice, 10 * "
        "--dip_lambda_od for dip_vae_i and --dip_lambda_od for dip_vae_ii.",
        kind="float", low=0)
    mmd_weight: float = setting(
        1000.0, "info_vae: weight lambda of MMD^2(q(z), p(z)) (Zhao et al. "
        "2017 use 1000 on MNIST; Tolstikhin et al.'s WAE-MMD 10).",
        kind="float", low=0)
    mmd_kernel: str = setting(
        "imq", "info_vae: kernel of the MMD, with scale C = 2 * latent_dim: "
        "imq (inverse multiquadric C / (C + |x-y|^2), Tolstikhin et al. "
        "2018) or rbf (Gaussian exp(-|x-y|^2 / C), Zhao et al. 2017).",
        kind="enum", choices=tuple(penalties.KERNELS))
    capacity_max: float = setting(
        25.0, "capacity: the rate target C (nats) reached after "
        "--capacity_steps (Burgess et al. 2018: 25 on dSprites).",
        kind="float", low=0)
    capacity_steps: int = setting(
        100000, "capacity: steps over which C rises linearly from 0 to "
        "--capacity_max (Burgess et al. 2018: 100k); 0 = at once.",
        kind="int", low=0)
    capacity_weight: float = setting(
        1000.0, "capacity: weight gamma of |rate - C| (Burgess et al. 2018: "
        "1000).", kind="float", low=0)
    conditional: bool = setting(
        False, "Condition the model on the dataset's labels: q(z|x,y) and "
        "p(x|z,y) (a conditional VAE, Sohn et al. 2015); the bounds are on "
        "log p(x|y), and samples take labels.", kind="bool")
    semi_supervised: bool = setting(
        False, "Train the semi-supervised model M2 (Kingma et al. 2014): a "
        "classifier q(y|x) beside a conditional VAE, on "
        "--labelled_examples labelled examples and every training example "
        "without its label.", kind="bool")
    labelled_examples: int = setting(
        100, "With --semi_supervised: labelled training examples, balanced "
        "over the classes and chosen by --seed (their indices are written "
        "to <model_dir>/labelled_examples.json); the rest of the training "
        "split is used without labels.", kind="int", low=1)
    labelled_batch_size: int = setting(
        100, "With --semi_supervised: labelled examples in every batch, "
        "beside --batch_size unlabelled ones.", kind="int", low=1)
    alpha: float = setting(
        1.0, "With --semi_supervised: weight of the classification "
        "log-likelihood log q(y|x) of each labelled example (Kingma et al.'s "
        "alpha).", kind="float", low=0)
    # Optimisation.
    optimizer: str = setting(
        "adam", "Optimizer (tf_keras).", kind="enum",
        choices=("adam", "rmsprop", "sgd"))
    learning_rate: float = setting(
        1e-3, "(Initial) learning rate.", kind="float", above=0)
    lr_schedule: str = setting(
        "constant", "constant, or cosine decay to 0 (over the last "
        "--lr_decay_epochs epochs). The rate follows the flags also when a "
        "run is resumed with other ones.", kind="enum",
        choices=("constant", "cosine"))
    lr_decay_epochs: int = setting(
        0, "With --lr_schedule=cosine: the rate is constant, then decays "
        "over the last this many epochs of the run (0: over the whole run). "
        "Resume a run with a larger --epochs and this to anneal it.",
        kind="int", low=0)
    batch_size: int = setting(
        100, "Global batch size (summed over replicas).", kind="int", low=1)
    epochs: int = setting(
        20, "Training epochs; ignored when --max_steps > 0.", kind="int",
        low=0)
    max_steps: int = setting(
        0, "Total training steps; overrides --epochs when > 0. A run resumed "
        "with a larger value trains on.", kind="int", low=0)
    jit_compile: bool | str = setting(
        "auto", "Compile the training step with XLA: true, false, or auto: "
        "on where python tools/benchmark.py measured it faster (MLP "
        "networks trained on the ELBO, with or without a flow posterior: "
        "~1.3x on CPU), off where it measured slower (conv networks, IWAE "
        "with --n_samples > 1, mixed_bfloat16, whose AMX matmuls XLA does "
        "not use). If XLA cannot compile the step, training continues "
        "without it after one log line. See docs/performance.md.",
        kind="bool_or_auto")
    mixed_precision: str = setting(
        "auto", "Compute the networks in reduced precision (distributions, "
        "bounds and evaluation stay float32): auto (bfloat16 where the "
        "hardware computes it natively - a GPU of compute capability >= 8.0, "
        "a CPU with AMX or AVX512-BF16 - and the batch is >= 1000, where it "
        "was measured faster; else float32; see tfpvae.hardware), none "
        "(float32), mixed_bfloat16, or mixed_float16 (with dynamic loss "
        "scaling).", kind="enum",
        choices=("auto", "none", "mixed_bfloat16", "mixed_float16"))
    strategy: str = setting(
        "default", "tf.distribute strategy: default (one device), mirrored "
        "(all local devices; see --cpu_devices) or multi_worker "
        "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG).",
        kind="enum", choices=("default", "mirrored", "multi_worker"))
    steps_per_execution: int = setting(
        10, "Training steps per call of the compiled training loop: the "
        "steps between two evaluations, logs or checkpoints run in calls of "
        "up to this many steps, which saves the Python and input-pipeline "
        "overhead of every step (as Keras' steps_per_execution). The same "
        "updates as 1; 1 = one step per call.", kind="int", low=1)
    seed: int = setting(
        0, "Seed of the initialisation, the data order and every random "
        "draw; runs with the same seed and flags give the same losses on "
        "CPU.", kind="int", check=_check_seed)
    # Data.
    dataset: str = setting(
        "", "The data: '' (the default) is MNIST from tensorflow_datasets "
        "when it is cached or can be downloaded, else the 10,000 MNIST "
        "digits bundled with tfpvae (mnist_bundled); or a "
        "tensorflow_datasets name (mnist, binarized_mnist, fashion_mnist, "
        "dsprites and shapes3d with their factors, ...), mnist_bundled, "
        "sklearn_digits (8x8 digits, offline), sprites or sprites:N "
        "(generated 2-D sprites with known factors, offline; default 50,000 "
        "images), or a local .npz/.npy/.csv/.amat file or MNIST IDX folder.",
        kind="str")
    data_dir: str = setting(
        "", "tensorflow_datasets data directory ('' = tfds default).",
        kind="str")
    digits: tuple[int, ...] = setting(
        (), "Keep only these labels, e.g. 1,8 ('' = all).", kind="ints",
        low=0)
    binarize: str = setting(
        "auto", "auto (dynamic for a bernoulli likelihood on non-binary "
        "images, else none), none, static (binarize once) or dynamic (fresh "
        "binary sample of each training batch every epoch).", kind="enum",
        choices=("auto", *data.BINARIZE_CHOICES))
    validation_fraction: float = setting(
        0.1, "Fraction of the training data held out for evaluation when "
        "the dataset has no validation split.", kind="float",
        check=_check_fraction)
    label_column: str = setting(
        "", "Column of a .csv dataset holding labels ('' = none).",
        kind="str")
    standardize: bool = setting(
        True, "Standardise tabular data with the training mean and std.",
        kind="bool")
    # Evaluation, logging, checkpoints, export.
    eval_every: int = setting(
        0, "Evaluate on the held-out split every this many steps; 0 = at the "
        "end of every epoch. Training always ends with an evaluation.",
        kind="int", low=0)
    eval_k: int = setting(
        10, "Importance samples of the evaluation IWAE bound on log p(x); 0 "
        "= ELBO only.", kind="int", low=0)
    eval_batch_size: int = setting(
        500, "Batch size of the evaluation.", kind="int", low=1)
    log_every: int = setting(
        100, "Log progress and TensorBoard training scalars every this many "
        "steps.", kind="int", low=1)
    checkpoint_every: int = setting(
        1000, "Save a checkpoint every this many steps (one is also saved at "
        "every evaluation, at the end and on SIGINT/SIGTERM); 0 = only "
        "then.", kind="int", low=0)
    keep_checkpoints: int = setting(
        3, "Number of most recent checkpoints kept.", kind="int", low=1)
    early_stopping_patience: int = setting(
        0, "Stop after this many evaluations without a better held-out bound "
        "(IWAE_eval_k, or the ELBO when --eval_k=0); 0 = never. The best "
        "model is always kept in <model_dir>/best.", kind="int", low=0)
    export: bool = setting(
        False, "Also export a SavedModel (encode/decode/sample signatures) "
        "of the checkpoint with the best held-out bound to "
        "<model_dir>/saved_model.", kind="bool")
    plots: bool = setting(
        True, "Draw the figures of the trained model (loss curves, latent "
        "space, manifolds, traversals, reconstructions, prior samples) into "
        "<model_dir>/plots at the end of training, from the checkpoint with "
        "the best held-out bound; redraw them any time with python -m "
        "tfpvae.plot.", kind="bool")

    RULES = ModelConfig.RULES + (
        (("kl", "prior", "posterior_flow"), _check_kl),
        (("gradient_estimator", "n_samples", "posterior_flow", "latent_dim"),
         _check_dreg),
        (("conditional", "semi_supervised", "n_samples", "prior"),
         _check_labels_use),
        (("objective", "latent_dim", "posterior_flow", "semi_supervised",
          "n_samples"), _check_objective),
        (("objective", "discriminator_learning_rate"), _check_discriminator),
        (("objective", "batch_size"), _check_tc_batch),
        (("epochs", "max_steps"), _check_length),
        (("lr_schedule", "lr_decay_epochs", "epochs", "max_steps"),
         _check_lr_decay),
    )

    def model_settings(self) -> dict:
        """The `ModelConfig` fields: the hyperparameters of the run's model."""
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(ModelConfig)}


#: The valid values of every enum-valued setting.
CHOICES: dict[str, tuple[str, ...]] = {
    f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig)
    if f.metadata["kind"] == "enum"}


# --------------------------------------------------------------------------
# Flags.

_DEFINE = {"bool": flags.DEFINE_bool, "int": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "str": flags.DEFINE_string}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per `TrainConfig` field, and the run-level flags.

    Enum settings become `DEFINE_enum` flags (absl names the valid choices
    in its error), integer lists `DEFINE_list` flags; every check becomes a
    validator.

    Args:
        flag_values: Where to define the flags (absl's global FLAGS by
            default; a fresh `flags.FlagValues()` for tests and docs).
    """
    for field in dataclasses.fields(TrainConfig):
        _define(field, flag_values)
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
    for names, rule in TrainConfig.RULES:
        flags.register_multi_flags_validator(
            list(names), _flag_validator(names, rule), flag_values=flag_values)


def _define(field: dataclasses.Field, flag_values: flags.FlagValues) -> None:
    meta, name, default = field.metadata, field.name, field.default
    kind, help_text = meta["kind"], meta["help"]
    if kind == "bool_or_auto":
        flags.DEFINE(_BoolOrAutoParser(), name, default, help_text,
                     flag_values=flag_values)
    elif kind == "enum":
        flags.DEFINE_enum(name, default, meta["choices"], help_text,
                          flag_values=flag_values)
        return  # DEFINE_enum checks the value while parsing.
    elif kind in ("ints", "sizes"):
        values = default if isinstance(default, tuple) else (default,)
        flags.DEFINE_list(name, [str(v) for v in values], help_text,
                          flag_values=flag_values)
    else:
        _DEFINE[kind](name, default, help_text, flag_values=flag_values)
    for check in _value_checks(field):
        flags.register_multi_flags_validator(
            [name], _flag_validator((name,), check, normalise=False),
            flag_values=flag_values)


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


def _flag_validator(names, rule, normalise: bool = True):
    def validate(values):
        try:
            message = rule(*(_flag_value(n, values[n]) if normalise
                             else values[n] for n in names))
        except ValueError:
            return True  # The checks of the value itself name the problem.
        if message:
            raise flags.ValidationError(message)
        return True
    return validate


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _flag_value(name: str, value):
    """A flag's value in the form the `TrainConfig` field holds."""
    return _normalise(_FIELDS[name], value)


def from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """Builds the `TrainConfig` from parsed flags."""
    return TrainConfig(**{name: flag_values[name].value for name in _FIELDS})


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
