"""The repository stands alone: no file in it names a file that is not in it.

Every text file of the checkout (tracked, or new and not ignored; ``.ci/`` excluded) is read, and four kinds of
mention are checked:

1. the design and specification documents that live outside the repository are never named (the pattern is built
   from pieces in :data:`FORBIDDEN`, so this file does not name them either);
2. a repository path, i.e. a word that starts with a top-level directory of the repository (``src/``, ``tests/``,
   ``docs/``, ``benchmarks/``, ``examples/``, ``scripts/``, ...) in prose, backticks, links or docstrings, exists;
   so does an all-caps root document such as ``README.md`` or ``CHANGELOG.md``;
3. a relative link target in a markdown file (``[text](guide/data.md)``, ``[x]: ../metrics.md``) exists, resolved
   against the file's own directory;
4. a dotted ``rulab.…`` name written alone in backticks, or as the target of a reStructuredText role
   (``:func:`~rulab.metrics.ood.auroc```), resolves: its module exists and, if it names something inside a
   module, the module has that attribute.

``CHANGELOG.md`` is exempt from 2-4: it records history, including files that have since moved or gone.
Words with placeholders (``tests/<area>``, ``src/rulab/*.py``) are cut at the placeholder and only their
existing prefix is checked.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = re.compile(
    r"(?:"
    + "|".join(["seed-" + "methods", "style-" + "anchors", "anchors", "DE" + "SIGN"])
    + r")\.md"
    + r"|\.\./"
    + "shared"
    + r"|shared/"
    + "reference"
)
"""Names of documents outside the repository (the design notes and the method specification it was built from)."""

EXCLUDED_DIRS = (".ci/",)
"""Machinery that runs the checks; not part of what a reader of the repository follows."""

HISTORY_FILES = ("CHANGELOG.md",)
"""Files that may name paths that no longer exist (checks 2-4 skip them)."""

TOP_DIRS = ("src", "tests", "docs", "benchmarks", "examples", "scripts")
"""Top-level directories a repository path may start with (plus every top-level directory the checkout has)."""

_ROOT_DOC = re.compile(r"(?<![\w./-])([A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*\.(?:md|rst|txt))\b")
_MD_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_REF = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_DOTTED = r"rulab(?:\.[A-Za-z_]\w*)+"
_BACKTICKED = re.compile(r"(?<!`)(`{1,2})~?(" + _DOTTED + r")(?:\(\))?\1(?!`)")
_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):`[~!]?(?:[^`<]*<)?(" + _DOTTED + r")(?:\(\))?>?`")


def _path_pattern(top_dirs: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted({re.escape(d) for d in top_dirs}, key=len, reverse=True))
    return re.compile(r"(?<![\w.@/-])((?:" + alternatives + r")/[\w./-]*)")


def checkout_files(root: Path) -> list[str]:
    """The checkout's files as relative POSIX paths: tracked, plus new files git does not ignore, that exist."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout (or git is missing): there is no repository to check")
    files = sorted({p for p in out.decode("utf-8", "surrogateescape").split("\0") if p})
    return [p for p in files if (root / p).is_file()]


def _read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _resolves(name: str) -> bool:
    """Whether a dotted ``rulab.…`` name is a module, or an attribute of the longest module prefix."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module = ".".join(parts[:k])
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if k == len(parts):
            return True
        try:
            obj = importlib.import_module(module)
        except ImportError:  # the module exists, an optional dependency of it does not: nothing more to look at
            return True
        return hasattr(obj, parts[k])
    return False


def find_problems(root: Path, files: Sequence[str]) -> list[str]:
    """Every mention in ``files`` (relative to ``root``) of something that is not in the repository.

    Returns:
        ``"path:line: what"`` strings, in file and line order; empty when the repository stands alone.
    """
    present = set(files)
    dirs = {str(parent.as_posix()) for f in files for parent in Path(f).parents if str(parent) != "."}
    top = set(TOP_DIRS) | {d for d in dirs if "/" not in d and not d.startswith(".")}
    repo_path = _path_pattern(top)

    def exists(rel: str) -> bool:
        rel = rel.rstrip("/")
        return rel in present or rel in dirs

    problems: list[str] = []
    for rel in files:
        if rel.startswith(EXCLUDED_DIRS):
            continue
        text = _read_text(root / rel)
        if text is None:
            continue
        history = rel in HISTORY_FILES
        here = Path(rel).parent
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{number}"
            for m in FORBIDDEN.finditer(line):
                problems.append(f"{where}: names {m.group(0)!r}, which is not in the repository")
            if history:
                continue
            for m in repo_path.finditer(line):
                target = m.group(1).rstrip(".")
                if not exists(target):
                    problems.append(f"{where}: names {target!r}, which does not exist")
            for m in _ROOT_DOC.finditer(line):
                name = m.group(1)
                if FORBIDDEN.fullmatch(name):
                    continue  # reported above
                if not (exists(name) or exists((here / name).as_posix())):
                    problems.append(f"{where}: names {name!r}, which does not exist")
            names = {m.group(1): None for m in _ROLE.finditer(line)}
            if rel.endswith((".md", ".py", ".rst")):
                names.update({m.group(2): None for m in _BACKTICKED.finditer(_ROLE.sub("", line))})
            for name in names:
                if not _resolves(name):
                    problems.append(f"{where}: names {name!r}, which is not a rulab module or attribute")
        if rel.endswith(".md") and not history:
            for m in [*_MD_LINK.finditer(text), *_MD_REF.finditer(text)]:
                target = m.group(1)
                if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
                    continue  # a URL, a mail address, an anchor on the same page, or an absolute path
                target = re.split(r"[#?]", target, maxsplit=1)[0]
                resolved = (here / target).as_posix()
                parts: list[str] = []
                for part in resolved.split("/"):
                    if part == "..":
                        if parts:
                            parts.pop()
                    elif part not in ("", "."):
                        parts.append(part)
                if not exists("/".join(parts)):
                    number = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{rel}:{number}: links to {m.group(1)!r}, which does not exist")
    return problems


def test_repository_names_only_what_it_has() -> None:
    problems = find_problems(ROOT, checkout_files(ROOT))
    assert not problems, (
        "the repository mentions things that are not in it; cite the paper (authors, year, section, equation or "
        "table) or the docs/ page that holds the fact instead, or fix the path:\n" + "\n".join(problems)
    )


def _write(root: Path, rel: str, text: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return rel


def test_the_check_catches_planted_references_and_nothing_else(tmp_path: Path) -> None:
    """A small checkout with one dangling reference of every kind, beside the same kinds of reference done right.

    Its top-level directories (``pkgsrc/``, ``checks/``, ``manual/``) are not those of this repository, so the
    planted paths written in this file are not themselves checked when the real repository is.
    """
    spec = "seed-" + "methods.md"
    contributing = "CONTRIBUTING" + ".md"
    files = [
        _write(
            tmp_path,
            "pkgsrc/mod.py",
            f'"""See ``checks/unit/test_gone.py`` and ``pkgsrc/other.py``; cites {spec} §1.2.\n\n'
            "Also :func:`~rulab.api." + "no_such_function` and :func:`~rulab.api.study`, ``rulab.metrics.ood``, "
            "``rulab.nope" + '_module``, ``pkgsrc/*.py``, ``checks/<area>``.\n"""\n',
        ),
        _write(tmp_path, "pkgsrc/other.py", "x = 1\n"),
        _write(tmp_path, "checks/unit/test_here.py", "def test_x():\n    assert True\n"),
        _write(
            tmp_path,
            "manual/index.md",
            "[ok](guide/page.md) [bad](guide/missing.md) [web](https://example.org/a.md)"
            " [anchor](#top) [up](../README.md#install)\n\n[ref]: guide/gone.md\n",
        ),
        _write(
            tmp_path,
            "manual/guide/page.md",
            f"Back to [the index](../index.md); see `manual/index.md` and `manual/nowhere.md`, and {contributing}.\n",
        ),
        _write(tmp_path, "README.md", "Read manual/index.md, then manual/guide/ and CHANGELOG.md.\n"),
        _write(tmp_path, "CHANGELOG.md", "- moved `checks/unit/test_gone.py` away.\n"),
        _write(tmp_path, ".ci/run", f"check manual/nowhere.md and {spec}\n"),
    ]
    forbidden_and_names = [
        f"pkgsrc/mod.py:1: names '{spec}', which is not in the repository",
        "pkgsrc/mod.py:3: names 'rulab.api." + "no_such_function', which is not a rulab module or attribute",
        "pkgsrc/mod.py:3: names 'rulab.nope" + "_module', which is not a rulab module or attribute",
    ]
    assert sorted(find_problems(tmp_path, files)) == sorted(
        [
            *forbidden_and_names,
            "pkgsrc/mod.py:1: names 'checks/unit/test_gone.py', which does not exist",
            "manual/guide/page.md:1: names 'manual/nowhere.md', which does not exist",
            f"manual/guide/page.md:1: names '{contributing}', which does not exist",
            "manual/index.md:1: links to 'guide/missing.md', which does not exist",
            "manual/index.md:3: links to 'guide/gone.md', which does not exist",
        ]
    )
    # once the missing files exist, only the outside document and the unknown rulab names are left
    for rel in (
        "checks/unit/test_gone.py",
        "manual/nowhere.md",
        "manual/guide/missing.md",
        "manual/guide/gone.md",
        contributing,
    ):
        files.append(_write(tmp_path, rel, "\n"))
    assert sorted(find_problems(tmp_path, files)) == sorted(forbidden_and_names)
