"""Every ``rulab ...`` command in README.md and docs/ exists as written: its subcommand and options are the command
line's, its config overrides name real config keys, and the presets, studies, datasets, benchmarks, detectors,
protocols and shift suites it names are registered. Preset and study names quoted in the text (``hein2019-mnist``,
``odin-{densenet,wrn}-{cifar10,cifar100}``, ``coursework-pets-*``) are checked against the registries too, so a
renamed preset cannot leave a stale name behind in the documentation."""

from __future__ import annotations

import fnmatch
import itertools
import re
import shlex
from pathlib import Path

import pytest

from rulab import cli
from rulab.config import RunCfg, fields_of
from rulab.data.corruptions import SHIFT_SUITES
from rulab.errors import ConfigError
from rulab.presets.study_spec import LauncherCfg
from rulab.registry import BENCHMARKS, DATASETS, DETECTORS, OOD_SETS, PAPER_TABLES, PRESETS, PROTOCOLS, STUDIES

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PREFIXES = ("fmnist", "hendrycks2019", "coursework", "hein2019", "odin")
NAME = re.compile(rf"^(?:{'|'.join(PREFIXES)})-[A-Za-z0-9_{{}},*-]+$")
FENCE = re.compile(r"^```([a-z]*)[ \t]*\n(.*?)^```", re.S | re.M)
SHELL = ("bash", "sh", "shell", "console")
"""Fenced blocks whose every line is a shell line; in other blocks (``text``, none) only ``$``-prompted lines are."""


def _blocks(text: str) -> list[str]:
    """The shell lines of a page's fenced blocks, one block per string (Python blocks are skipped)."""
    out = []
    for lang, block in FENCE.findall(text):
        if lang in SHELL:
            out.append(block)
        elif lang in ("", "text"):
            out.append("\n".join(line for line in block.splitlines() if line.startswith(("$ ", "error:"))))
    return out


PLACEHOLDER = re.compile(r"^[A-Z][A-Z_|.]*$|[<>]|\.\.\.|…")
FREE_FORM = ("model.kwargs.", "method.kwargs.", "data.kwargs.", "eval.detector_kwargs.", "launcher.slurm.additional.")
# errors that only a run already on disk can produce (a changed config on --resume, a run another process holds)
PAGE_DETECTORS: set[str] = set()  # detectors the page being checked registers in its own example code
STATEFUL_ERRORS = ("was trained with another config", "is in use by process")


def _registered() -> set[str]:
    suites = {s.name for s in SHIFT_SUITES}
    return (
        set(PRESETS.list())
        | set(STUDIES.list())
        | set(BENCHMARKS.list())
        | suites
        | set(OOD_SETS.list())
        | set(PAPER_TABLES.list())
        | set(PROTOCOLS.list())
    )


def _expand(token: str) -> list[str]:
    """``a-{b,c}-{d,e}`` → the four names (shell brace expansion)."""
    parts = re.split(r"(\{[^{}]*\})", token)
    options = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*options)]


def commands(text: str) -> list[str]:
    """The ``rulab`` command lines of a page's fenced blocks (``$`` prompts, ``\\`` continuations, ``&&``/``;``/``|``
    chains and ``#`` comments handled)."""
    lines: list[str] = []
    for block in _blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block).splitlines()
        for i, line in enumerate(joined):
            line = line.strip().removeprefix("$ ")
            if i + 1 < len(joined) and joined[i + 1].startswith("error:"):
                continue  # an example of a mistake and its error message (test_documented_mistakes_fail)
            for part in re.split(r"&&|;|\|", line):
                # `rulab ...`, `python -m rulab ...`, `torchrun ... -m rulab ...` (several on one line: each)
                for m in re.finditer(r"(?:^|(?<=\s))(?:-m\s+)?rulab\s+(.*?)(?=\s+-m\s+rulab\s|$)", part.strip()):
                    if not part.strip()[: m.start()].rstrip().endswith(("install", "import")):
                        lines.append("rulab " + m.group(1))
    out = []
    for line in lines:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        out.append(" ".join(shlex.quote(t) for t in tokens))
    return out


def mentions(text: str) -> list[str]:
    """The ``rulab ...`` inline code spans of a page's prose (a command, or a command and some of its options)."""
    return re.findall(r"`(rulab [^`]+)`", text)


def check_mention(span: str) -> None:
    """A prose mention or a usage synopsis (``rulab eval --detectors``, ``rulab train [PRESET] [--resume]``): the
    subcommand exists and every ``--option`` is one of its options or a config key; positional arguments may be left
    out, and names given are checked as in a full command."""
    tokens = [t.strip("[]") for t in span.split()]
    if len(tokens) < 2 or tokens[1].startswith("-") or PLACEHOLDER.search(tokens[1]):
        return
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001 - argparse has no public accessor
    assert tokens[1] in sub, f"unknown command '{tokens[1]}' in: {span}"
    options = {o for a in sub[tokens[1]]._actions for o in a.option_strings}  # noqa: SLF001
    keys = set(fields_of(RunCfg))
    for t in tokens[2:]:
        if t.startswith("--") and not PLACEHOLDER.search(t.split("=", 1)[0]):
            opt = t.split("=", 1)[0]
            key = opt[2:]
            if tokens[1] == "eval" and "." not in key and opt not in options:
                key = "eval." + key
            assert opt in options or key in keys or key.startswith(FREE_FORM), (
                f"unknown option '{opt}' of `rulab {tokens[1]}` in: {span}"
            )
    if not any("[" in t or PLACEHOLDER.search(t) for t in span.split()[2:]):
        try:
            check_command(span)
        except AssertionError as err:
            if "refuses" not in str(err):  # a mention may leave out a required argument
                raise


def _check_names(values: list[str], known: set[str] | list[str], what: str, line: str) -> None:
    for v in values:
        if PLACEHOLDER.search(v) or not v:
            continue
        for name in _expand(v):
            if "*" in name:
                assert fnmatch.filter(list(known), name), f"{what} pattern '{name}' matches nothing: {line}"
            else:
                assert name in known, f"unknown {what} '{name}' in: {line}"


def check_command(line: str) -> None:
    """Parse ``line`` with the real parser and check every name and override in it."""
    argv = shlex.split(line)[1:]
    if not argv or argv[0].startswith("-"):
        return  # `rulab --version`, `rulab --help`
    parser = cli.build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except ConfigError as err:
        raise AssertionError(f"the command line refuses: {line} ({err})") from None
    except SystemExit as err:  # --help
        assert err.code == 0, line
        return
    overrides = cli._split_overrides([e for e in extra if not PLACEHOLDER.search(e)])
    keys = set(fields_of(RunCfg))
    if args.command in ("study", "show"):  # a study's launcher settings (--launcher.slurm.partition=gpu)
        keys |= {f"launcher.{k}" for k in fields_of(LauncherCfg)}
    for item in overrides:
        key = item.split("=", 1)[0]
        if args.command == "eval" and "." not in key:
            key = "eval." + key
        assert key in keys or key.startswith(FREE_FORM), f"unknown config key '{key}' in: {line}"
    cmd = args.command
    if cmd in ("train", "convert") and getattr(args, "preset", None):
        _check_names([args.preset], set(PRESETS.list()), "preset", line)
    if cmd == "show":
        _check_names([args.name], set(PRESETS.list()) | set(STUDIES.list()), "preset or study", line)
    if cmd == "study" and args.name.endswith((".yaml", ".yml")):  # a study file: the repository's examples must exist
        assert not args.name.startswith("examples/") or (ROOT / args.name).is_file(), (
            f"study file '{args.name}' is not in the repository: {line}"
        )
    elif cmd == "study":
        _check_names([args.name], set(STUDIES.list()), "study", line)
    if cmd in ("results", "report") and args.study:
        _check_names([args.study], set(STUDIES.list()), "study", line)
    if cmd == "data" and args.action == "fetch":
        _check_names(args.names, set(DATASETS.list()) | set(OOD_SETS.list()), "dataset", line)
    if cmd == "list" and args.what:
        assert args.what in cli._LISTABLE, line
    if cmd == "eval":
        if args.benchmark:
            _check_names([args.benchmark], set(BENCHMARKS.list()), "benchmark", line)
        if args.protocol:
            _check_names([args.protocol], set(PROTOCOLS.list()), "protocol", line)
        if args.detectors:
            _check_names(args.detectors.split(","), set(DETECTORS.list()) | PAGE_DETECTORS, "detector", line)
        if args.shift:
            _check_names([args.shift], {s.name for s in SHIFT_SUITES}, "shift suite", line)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_exists(page, monkeypatch):
    text = page.read_text(encoding="utf-8")
    # a page that shows how to register a detector may then use it
    monkeypatch.setitem(globals(), "PAGE_DETECTORS", set(re.findall(r'@DETECTORS\.register\("([^"]+)"\)', text)))
    for line in commands(text):
        if "[" in line or "]" in line:  # a usage synopsis: `rulab train [PRESET] [--config FILE]`
            check_mention(line)
        else:
            check_command(line)
    for span in mentions(text):
        check_mention(span)


def test_documented_mistakes_fail():
    """A command shown with the ``error:`` line it prints is a mistake on purpose: it must still be one."""
    shown = 0
    for page in PAGES:
        for block in _blocks(page.read_text(encoding="utf-8")):
            lines = block.splitlines()
            for line, after in zip(lines, lines[1:]):
                line = line.strip().removeprefix("$ ")
                if after.startswith("error:") and line.startswith("rulab "):
                    if any(state in after for state in STATEFUL_ERRORS):
                        continue  # needs an existing run: tests/train/test_run_integrity.py runs these with real processes
                    shown += 1
                    assert (
                        cli.main(
                            shlex.split(line)[1:] + ["--dry-run"]
                            if line.split()[1] in ("train", "study")
                            else shlex.split(line)[1:]
                        )
                        == 2
                    ), line
    assert shown >= 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_preset_or_study_name_is_registered(page):
    known = _registered()
    text = page.read_text(encoding="utf-8")
    for span in re.findall(r"`([^`\n]+)`", text):
        token = span.strip()
        if NAME.match(token):
            # a run of a preset (`fmnist-plain-s0`, `fmnist-plain-s0+mc20`, `fmnist-plain+ensemble`) names its preset
            preset = re.sub(r"(-s\d+)?(\+[a-z0-9]+)?$", "", token)
            _check_names([token if token in known else preset], known, "preset/study", f"{page.name}: `{token}`")


def test_the_checker_catches_what_it_should():
    """Known answers for the checker itself (so the tests above cannot pass by parsing nothing)."""
    text = "```bash\n$ rulab study fmnist-default --seeds 0 \\\n    --train.epochs=1  # comment\nmake test && rulab list presets\n```\nand `rulab show fmnist-plain`"
    assert commands(text) == ["rulab study fmnist-default --seeds 0 --train.epochs=1", "rulab list presets"]
    assert mentions(text) == ["rulab show fmnist-plain"]
    check_mention("rulab eval --detectors")
    with pytest.raises(AssertionError, match="unknown option"):
        check_mention("rulab eval --detector")
    with pytest.raises(AssertionError, match="unknown command"):
        check_mention("rulab evaluate")
    for good in commands(text):
        check_command(good)
    for bad, why in (
        ("rulab train cifar10-plain", "unknown preset"),
        ("rulab study fmnist-defualt", "unknown study"),
        ("rulab train fmnist-plain --trian.epochs=1", "unknown config key"),
        ("rulab frobnicate", "refuses"),
        ("rulab data fetch cifar11", "unknown dataset"),
        ("rulab eval runs/x --detectors msp,odn", "unknown detector"),
    ):
        with pytest.raises(AssertionError, match=why):
            check_command(bad)
    assert _expand("odin-{densenet,wrn}-{cifar10,cifar100}") == [
        "odin-densenet-cifar10",
        "odin-densenet-cifar100",
        "odin-wrn-cifar10",
        "odin-wrn-cifar100",
    ]
    with pytest.raises(AssertionError, match="matches nothing"):
        _check_names(["coursework-nothing-*"], _registered(), "preset/study", "x")
    assert sum(len(commands(p.read_text(encoding="utf-8"))) for p in PAGES) > 20  # the pages do hold commands
    assert commands("```bash\nrulab eval runs/x --shift '' --no-farconf\n```") == [
        "rulab eval runs/x --shift '' --no-farconf"
    ]
    two = "```sh\ntorchrun --nnodes=2 -m rulab train fmnist-plain --out /r   -m rulab train fmnist-fast --out /r\npip install rulab\n```"
    assert commands(two) == ["rulab train fmnist-plain --out /r", "rulab train fmnist-fast --out /r"]
    assert commands(
        "```text\n$ rulab list models\nrulab is a library\n```\n```python\nimport rulab  # rulab fits\n```"
    ) == ["rulab list models"]


def test_cited_test_files_exist():
    """A docstring or page that points at a test file (``tests/presets/test_paper_hparams.py``) points at a real one."""
    cited = set()
    for path in [*PAGES, *sorted((ROOT / "src").rglob("*.py"))]:
        cited |= set(re.findall(r"\btests/[A-Za-z0-9_/]+\.py\b", path.read_text(encoding="utf-8")))
    assert cited and not [c for c in sorted(cited) if not (ROOT / c).is_file()]
