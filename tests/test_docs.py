"""The documentation matches the code.

* docs/cli.md and the VAE block of docs/api.md are what
  `python tools/docs_reference.py` generates now;
* every `python -m tfpvae.<module> ...` command in README.md and docs/ names a
  real module and parses with that module's absl flags (flagfiles included);
  every `examples/*.py` path exists and the flags given to it are its own;
* every signature in docs/api.md matches the code (names, order, keyword-only
  markers, defaults), every public method, property, argument and attribute
  of `tfpvae.VAE` is documented there, and every `tfpvae.*` name mentioned in
  the docs exists;
* the Python code blocks of the docs run (blocks marked `python norun` or
  `python signature` are skipped);
* relative links and their #anchors resolve; images exist and are small.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import re
import shlex
from pathlib import Path

import pytest
from absl import flags

import tfpvae
import docs_reference as cli_reference

from conftest import REPO

DOCS = REPO / "docs"
MARKDOWN = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
API = DOCS / "api.md"
IMAGES = DOCS / "images"
MAX_IMAGE_BYTES = 200 * 1024

#: Pages written by other engineers; links to them may precede them.
PENDING_PAGES = {DOCS / "performance.md", DOCS / "results.md"}

#: absl's own flags, valid for every program.
ABSL_FLAGS = {"help", "helpfull", "helpshort", "helpxml", "only_check_args"}

_SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&", "2>"}


@dataclasses.dataclass
class Block:
    """A fenced code block: its info string, code and first line number."""
    path: Path
    line: int
    info: str
    code: str


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def fenced_blocks(path: Path) -> list[Block]:
    blocks, lines = [], _read(path).splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^ {0,3}(```+)(.*)$", lines[i])
        if match:
            fence, start = match.group(1), i
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            blocks.append(Block(path, start + 1, match.group(2).strip(),
                                "\n".join(body)))
        i += 1
    return blocks


def prose(path: Path) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"(?ms)^ {0,3}```.*?^ {0,3}```[^\n]*$", "", _read(path))


def code_spans(path: Path) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose(path))


def shell_commands(path: Path) -> list[tuple[str, str]]:
    """(where, command) of every `python ...` command in blocks and spans."""
    found = []
    for block in fenced_blocks(path):
        if block.info.split()[:1] == ["python"]:
            continue  # Python code, not shell commands.
        text = re.sub(r"\\\n", " ", block.code)
        for offset, line in enumerate(text.splitlines()):
            found.append((f"{path.name}:{block.line + 1 + offset}", line))
    found += [(f"{path.name} (inline)", span) for span in code_spans(path)]
    commands = []
    for where, line in found:
        for match in re.finditer(r"\bpython3? (-m tfpvae\.|examples/|tools/)",
                                 line):
            commands.append((where, line[match.start():]))
    return commands


def tokens_of(command: str) -> list[str]:
    """The command's words up to the first shell operator."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for token in lexer:
        if token in _SHELL_OPERATORS:
            break
        words.append(token)
    return words


def all_commands() -> list[tuple[str, str]]:
    return [c for path in MARKDOWN for c in shell_commands(path)]


# --------------------------------------------------------------------------
# The CLI reference.

def test_cli_reference_is_up_to_date():
    expected = cli_reference.render()
    current = _read(DOCS / "cli.md") if (DOCS / "cli.md").exists() else ""
    assert current == expected, (
        f"docs/cli.md differs from the flag definitions; regenerate it with "
        f"`{cli_reference.REGENERATE}` (from the repository root).")


def test_api_reference_of_the_vae_arguments_is_up_to_date():
    current = _read(API)
    assert current == cli_reference.render_api(current), (
        f"docs/api.md's generated block differs from tfpvae.VAE; regenerate "
        f"it with `{cli_reference.REGENERATE}` (from the repository root).")


# --------------------------------------------------------------------------
# Commands in the docs.

MODULE_COMMANDS = [(w, c) for w, c in all_commands()
                   if " -m " in c[:12] or " tools/" in c[:14]]
EXAMPLE_COMMANDS = [(w, c) for w, c in all_commands()
                    if (w, c) not in MODULE_COMMANDS]


def test_docs_have_commands():
    assert len(MODULE_COMMANDS) > 10 and len(EXAMPLE_COMMANDS) >= 5


@pytest.mark.parametrize("where, command", MODULE_COMMANDS,
                         ids=[w for w, _ in MODULE_COMMANDS])
def test_module_command_parses(where, command, monkeypatch):
    words = tokens_of(command)
    if words[1] == "-m":
        module, args = words[2], words[3:]
        assert importlib.util.find_spec(module) is not None, (
            f"{where}: no module {module}")
    else:  # A developer tool: python tools/<name>.py
        module, args = words[1], words[2:]
        assert (REPO / module).exists(), f"{where}: no file {module}"
    args = [w for w in args if w.lstrip("-").split("=")[0] not in ABSL_FLAGS]
    for arg in args:
        if arg.startswith("--flagfile="):
            path = REPO / arg.split("=", 1)[1]
            assert path.exists(), f"{where}: {path} does not exist"
    if module not in cli_reference.COMMANDS:
        assert not args, f"{where}: {module} takes no flags: {args}"
        return
    flag_values = cli_reference.flag_values_for(module)
    monkeypatch.chdir(REPO)  # Flagfile paths are relative to the checkout.
    try:
        rest = flag_values([module, *args])
    except flags.Error as e:
        pytest.fail(f"{where}: `{command}` does not parse: {e}")
    assert rest == [module], f"{where}: unexpected arguments {rest[1:]}"


def _example_options(script: Path) -> set[str]:
    return set(re.findall(r'add_argument\(\s*"--(\w+)"', _read(script)))


@pytest.mark.parametrize("where, command", EXAMPLE_COMMANDS,
                         ids=[w for w, _ in EXAMPLE_COMMANDS])
def test_example_command_is_valid(where, command):
    words = tokens_of(command)
    script = REPO / words[1]
    assert script.exists(), f"{where}: {words[1]} does not exist"
    options = _example_options(script) | {"help"}
    for word in words[2:]:
        assert word.startswith("--"), f"{where}: unexpected argument {word}"
        name = word[2:].split("=")[0]
        assert name in options, f"{where}: {words[1]} has no option --{name}"


def test_every_example_path_mentioned_exists():
    for path in MARKDOWN:
        # examples/x.py or ../examples/x.py, not keras/examples/x.py.
        for name in re.findall(r"(?<![\w-]/)\bexamples/[\w-]+\.py", _read(path)):
            assert (REPO / name).exists(), f"{path.name}: {name} does not exist"


def test_every_example_is_mentioned_in_the_docs():
    text = "".join(_read(p) for p in MARKDOWN)
    for script in sorted((REPO / "examples").glob("*.py")):
        assert f"examples/{script.name}" in text, script.name


# --------------------------------------------------------------------------
# The API reference.

def resolve(dotted: str):
    """The object a dotted name `tfpvae.x.y` names (imports modules)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def signature_blocks() -> list[Block]:
    return [b for b in fenced_blocks(API) if b.info == "python signature"]


def parse_signature(code: str) -> tuple[str, list[inspect.Parameter] | None]:
    """`tfpvae.f(a, *, b=1)` -> ("tfpvae.f", parameters); no parentheses ->
    (name, None)."""
    code = " ".join(code.split())
    match = re.fullmatch(r"([\w.]+)(?:\((.*)\))?", code)
    assert match, f"not a signature: {code}"
    name, args = match.groups()
    if args is None:
        return name, None
    function = ast.parse(f"def f({args}): pass").body[0]
    spec = function.args
    parameters = []
    positional = spec.posonlyargs + spec.args
    defaults = [None] * (len(positional) - len(spec.defaults)) + spec.defaults
    for arg, default in zip(positional, defaults):
        parameters.append((arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default))
    for arg, default in zip(spec.kwonlyargs, spec.kw_defaults):
        parameters.append((arg.arg, inspect.Parameter.KEYWORD_ONLY, default))
    return name, parameters


def real_parameters(obj) -> list[inspect.Parameter]:
    parameters = list(inspect.signature(obj).parameters.values())
    if parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    return parameters


SIGNATURES = signature_blocks()


@pytest.mark.parametrize("block", SIGNATURES,
                         ids=[parse_signature(b.code)[0] for b in SIGNATURES])
def test_api_signature_matches_the_code(block):
    name, documented = parse_signature(block.code)
    obj = resolve(name)
    if documented is None:
        return  # A property or constant: it exists.
    real = real_parameters(obj)
    assert [p[0] for p in documented] == [p.name for p in real], (
        f"api.md:{block.line}: {name} takes {[p.name for p in real]}")
    for (arg, kind, default), parameter in zip(documented, real):
        kind_ok = (parameter.kind == kind or (
            kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
            and parameter.kind == inspect.Parameter.POSITIONAL_ONLY))
        assert kind_ok, f"api.md:{block.line}: {name}: {arg} is {parameter.kind}"
        if parameter.default is inspect.Parameter.empty:
            assert default is None, f"api.md:{block.line}: {name}: {arg} has no default"
            continue
        assert default is not None, (
            f"api.md:{block.line}: {name}: {arg} defaults to {parameter.default!r}")
        try:
            value = ast.literal_eval(default)
        except ValueError:
            continue  # Not a literal; the name is checked.
        assert value == parameter.default, (
            f"api.md:{block.line}: {name}: {arg} defaults to "
            f"{parameter.default!r}, not {value!r}")


def _documented_names() -> set[str]:
    return {parse_signature(b.code)[0] for b in SIGNATURES}


def test_every_public_member_of_vae_is_documented():
    documented = _documented_names()
    assert "tfpvae.VAE" in documented
    missing = []
    for cls in (tfpvae.VAE, tfpvae.LatentVariableModel):
        members = [name for name, value in vars(cls).items()
                   if not name.startswith("_") and (
                       isinstance(value, (property, classmethod, staticmethod))
                       or inspect.isfunction(value))]
        missing += [m for m in members
                    if f"tfpvae.VAE.{m}" not in documented
                    and f"tfpvae.LatentVariableModel.{m}" not in documented]
    assert not missing, f"document these model members in docs/api.md: {missing}"


def _section(text: str, start: str) -> str:
    """The text from `start` to the next heading of level 1-3."""
    begin = text.index(start)
    end = re.search(r"(?m)^#{1,3} ", text[begin + len(start):])
    return text[begin:begin + len(start) + end.start()] if end else text[begin:]


def test_every_vae_argument_and_attribute_is_documented(tiny_model):
    text = _read(API)
    section = _section(text, "## The model: `tfpvae.VAE`")
    for parameter in real_parameters(tfpvae.VAE):
        assert f"| `{parameter.name}` |" in section, (
            f"describe the VAE argument `{parameter.name}` in docs/api.md")
    model = tiny_model()
    attributes = [n for n in vars(model) if not n.startswith("_")]
    for name in attributes:
        assert f"`{name}`" in section, (
            f"describe the VAE attribute `{name}` in docs/api.md")


def test_every_public_name_of_the_package_is_documented():
    documented = _documented_names()
    for name in tfpvae.__all__:
        assert f"tfpvae.{name}" in documented, name
    section = _section(_read(API), "## Bound terms: `tfpvae.ELBOResult`")
    for field in tfpvae.ELBOResult._fields:
        assert f"| `{field}` |" in section, field
    load_dataset = _section(_read(API), "### `tfpvae.data.load_dataset`")
    for parameter in real_parameters(tfpvae.data.load_dataset)[1:]:
        assert f"| `{parameter.name}` |" in load_dataset, parameter.name


def test_every_documented_tfpvae_name_exists():
    for path in MARKDOWN:
        text = _read(path)
        for name in sorted(set(re.findall(r"\btfpvae(?:\.[A-Za-z_]\w*)+", text))):
            try:
                resolve(name)
            except (ImportError, AttributeError):
                pytest.fail(f"{path.name} mentions {name}, which does not exist")
        for member in sorted(set(re.findall(r"`VAE\.(\w+)", text))):
            assert hasattr(tfpvae.VAE, member), f"{path.name}: VAE.{member}"


# --------------------------------------------------------------------------
# Python code blocks run.

PYTHON_PAGES = [p for p in MARKDOWN
                if any(b.info == "python" for b in fenced_blocks(p))]


@pytest.mark.parametrize("path", PYTHON_PAGES,
                         ids=[str(p.relative_to(REPO)) for p in PYTHON_PAGES])
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_example"}
    for block in fenced_blocks(path):
        if block.info != "python":
            continue
        try:
            exec(compile(block.code, f"{path.name}:{block.line}", "exec"),
                 namespace)
        except Exception as e:  # pylint: disable=broad-except
            pytest.fail(f"{path.name}:{block.line}: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------
# Links and images.

def github_slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    slugs, seen = set(), {}
    for heading in re.findall(r"(?m)^#{1,6} +(.+?) *#*$", prose(path)):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def links(path: Path) -> list[str]:
    text = prose(path)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    targets += re.findall(r"<img [^>]*src=\"([^\"]+)\"", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("path", MARKDOWN,
                         ids=[str(p.relative_to(REPO)) for p in MARKDOWN])
def test_relative_links_resolve(path):
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if linked in PENDING_PAGES and not linked.exists():
            continue
        assert linked.exists(), f"{path.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), (
                f"{path.name}: no heading #{anchor} in {linked.name}")


def test_images_are_small_and_used():
    used = set()
    for path in MARKDOWN:
        for target in links(path):
            if target.endswith(".png"):
                used.add((path.parent / target).resolve())
    for image in sorted(IMAGES.glob("*")):
        assert image.stat().st_size < MAX_IMAGE_BYTES, (
            f"{image.name} is {image.stat().st_size} bytes; optimise it")
        assert image.resolve() in used, f"{image.name} is not used in the docs"


def test_the_model_family_page_shows_the_test_family_as_it_is():
    page = _read(DOCS / "howto" / "model_family.md")
    code = _read(REPO / "tests" / "linear_gaussian.py")
    assert f"```python norun\n{code}```" in page, (
        "docs/howto/model_family.md must show tests/linear_gaussian.py "
        "verbatim; copy the file into its code block.")
