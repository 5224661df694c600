"""Renders the command-line reference (docs/cli.md) from the absl flag definitions.

    python -m tfpvae.cli_reference > docs/cli.md

Every program of tfpvae defines its flags in a function
`define_flags(flag_values)`; this module calls each on a fresh
`absl.flags.FlagValues()` (nothing runs, nothing is parsed) and writes one
Markdown table per program with every flag's name, type, default and help
text. `tests/test_docs.py` regenerates the page and compares it with the
committed docs/cli.md, so the reference cannot drift from the code.

`COMMANDS` is also what the documentation tests use to check that every
`python -m tfpvae.<module> --flag` written in the docs is a real flag.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Callable

from absl import flags

from tfpvae import config as config_lib

#: The command that regenerates docs/cli.md.
REGENERATE = "python -m tfpvae.cli_reference > docs/cli.md"


def _define_evaluate_flags(flag_values: flags.FlagValues) -> None:
    from tfpvae import evaluate  # pylint: disable=import-outside-toplevel
    evaluate.define_flags(flag_values)


def _define_plot_flags(flag_values: flags.FlagValues) -> None:
    from tfpvae import plot  # pylint: disable=import-outside-toplevel
    plot.define_flags(flag_values)


def _define_benchmark_flags(flag_values: flags.FlagValues) -> None:
    from tfpvae import benchmark  # pylint: disable=import-outside-toplevel
    benchmark.define_flags(flag_values)


@dataclasses.dataclass(frozen=True)
class Command:
    """One `python -m` program and how its flags are defined.

    Attributes:
        module: The module run with `python -m`.
        summary: One sentence on what it does.
        define_flags: Defines the program's flags on a `FlagValues`.
        sections: Flag name -> heading of the group of flags it starts
            (in definition order); the flags before the first are listed
            without a heading.
    """

    module: str
    summary: str
    define_flags: Callable[[flags.FlagValues], None]
    sections: tuple[tuple[str, str], ...] = ()


COMMANDS: dict[str, Command] = {c.module: c for c in (
    Command("tfpvae.main",
            "Trains a VAE (or resumes the run in `--model_dir`) and "
            "evaluates it on the held-out split.",
            config_lib.define_flags,
            sections=(("latent_dim", "Model"), ("kl", "Objective"),
                      ("optimizer", "Optimisation and devices"),
                      ("dataset", "Data"),
                      ("eval_every", "Evaluation, logging, checkpoints, export"),
                      ("model_dir", "Run"))),
    Command("tfpvae.evaluate",
            "Estimates log p(x) with k importance samples, the ELBO and the "
            "active units of a trained model; writes "
            "`<model_dir>/evaluation.json`.",
            _define_evaluate_flags),
    Command("tfpvae.plot",
            "Draws the figures of a trained model into `<model_dir>/plots/`, "
            "or compares the learning curves of several runs (`--compare`).",
            _define_plot_flags),
    Command("tfpvae.benchmark",
            "Measures training and evaluation speed beside hand-written "
            "TensorFlow; see [performance.md](performance.md).",
            _define_benchmark_flags),
)}


def flag_values_for(module: str) -> flags.FlagValues:
    """A fresh `FlagValues` holding the flags of `python -m <module>`.

    Raises:
        KeyError: If `module` is not one of `COMMANDS`.
    """
    flag_values = flags.FlagValues()
    COMMANDS[module].define_flags(flag_values)
    return flag_values


def _default_text(flag) -> str:
    value = flag.default
    if value is None:
        return "*(none)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    value = str(value)
    return f"`{value}`" if value else "`''`"


def _type_text(flag) -> str:
    enum_values = getattr(flag.parser, "enum_values", None)
    if enum_values:
        return " \\| ".join(f"`{v}`" for v in enum_values)
    kind = flag.flag_type()
    return "list" if "list" in kind else kind


def _help_text(flag) -> str:
    """The help text as a table cell, without the `<a|b|c>: ` prefix absl
    adds to enums; `<`, `>` and `|` escaped (`<model_dir>` is not HTML)."""
    text = " ".join(flag.help.split())
    if getattr(flag.parser, "enum_values", None):
        text = re.sub(r"^<[^>]*>: ", "", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def render_command(command: Command) -> str:
    """The Markdown section of one program."""
    flag_values = flags.FlagValues()
    command.define_flags(flag_values)
    headings = dict(command.sections)
    missing = sorted(set(headings) - set(flag_values))
    if missing:
        raise ValueError(f"{command.module}: section flags {missing} are not "
                         f"defined; update COMMANDS in {__name__}.")
    header = "| flag | type | default | description |\n| --- | --- | --- | --- |"
    lines = [f"## `python -m {command.module}`", "", command.summary, ""]
    open_table = False
    for name in flag_values:
        if name in headings:
            if open_table:
                lines.append("")
            lines += [f"### {headings[name]}", ""]
            open_table = False
        if not open_table:
            lines.append(header)
            open_table = True
        flag = flag_values[name]
        lines.append(f"| `--{name}` | {_type_text(flag)} | {_default_text(flag)} "
                     f"| {_help_text(flag)} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole of docs/cli.md."""
    parts = [
        "# Command-line reference",
        "",
        f"Generated from the absl flag definitions by `{REGENERATE}`; do not "
        "edit it by hand (tests/test_docs.py fails when the page and the code "
        "differ).",
        "",
        "Every flag of every tfpvae program, with its default and help text. "
        "On the command line, list flags "
        "take comma-separated values (`--hidden_units=500,500`), booleans take "
        "`--name`/`--noname` or `--name=true/false`, and absl's own flags work "
        "everywhere: `--flagfile=FILE` reads flags from a file (one per line, "
        "`#` comments; later flags override it), `--helpfull` prints this "
        "list. The presets in `flags/` are flagfiles; see "
        "[tutorials.md](tutorials.md).",
        "",
        "Programs: " + ", ".join(
            f"[`{m}`](#python--m-{m.replace('.', '')})" for m in COMMANDS) + ".",
        "",
    ]
    parts += [render_command(c) for c in COMMANDS.values()]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        sys.exit(f"usage: {REGENERATE}\n(takes no arguments; writes to stdout)")
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
