"""A griffe extension for the API reference: render rulab's reStructuredText habits as Markdown.

rulab's docstrings are Google style with a few reStructuredText constructs that Markdown shows verbatim:
cross-reference roles (``:func:`x```), simple tables framed by ``====`` lines and ``>>>`` sessions outside an
``Example:`` section. This extension rewrites them in the docstring text before mkdocstrings parses it:
roles become inline code, tables and sessions become fenced blocks. The source files are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|const|ref):`(~?)([^`]+)`")
_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _role(m: re.Match[str]) -> str:
    short, target = m.group(1), m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _fence(lines: list[str], start: int, end: int, lang: str) -> list[str]:
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    return [f"{indent}```{lang}", *lines[start:end], f"{indent}```"]


def convert(text: str) -> str:
    """The Markdown form of a docstring (see the module docstring)."""
    text = _ROLE.sub(_role, text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if not in_fence and _RULE.match(line):  # a simple table: three rule lines (top, under the header, bottom)
            rules = [j for j in range(i, len(lines)) if _RULE.match(lines[j])]
            end = rules[2] + 1 if len(rules) >= 3 else (rules[-1] + 1)
            out += _fence(lines, i, end, "text")
            i = end
            continue
        if not in_fence and line.lstrip().startswith(">>>"):
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            out += _fence(lines, i, j, "python")
            i = j
            continue
        out.append(line.rstrip(":") + ":" if line.rstrip().endswith("::") else line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring's reStructuredText constructs as Markdown when the object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
