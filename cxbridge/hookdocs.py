"""The hook reference, generated from :mod:`cxbridge.hookspecs` (``cxbridge hooks``, ``docs/hooks.md``).

Hooks are grouped by the banner comments of ``hookspecs.py``::

    # ------------------------------------------------
    # Registration hooks: called once when ...
    # ------------------------------------------------

The text before the first ``:`` is the phase title, the rest its description. :func:`check_hookspec` holds
the documentation rules every hook must follow (tested in ``tests/core/test_hookspecs_docs.py``).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["HookDoc", "Phase", "check_hookspec", "generate_markdown", "hook_phases", "hookspec_functions"]

_BANNER_RE = re.compile(r"^# -{20,}\s*$")
_DEF_RE = re.compile(r"^def (\w+)\(")
_PARAM_RE = re.compile(r":param (\w+):")
_SEMANTICS = ("Called ", "Stops at ")


@dataclass
class HookDoc:
    """One hook: name, function, whether it is ``firstresult``."""

    name: str
    function: Callable[..., Any]
    firstresult: bool = False

    @property
    def signature(self) -> str:
        return format_signature(self.function)


@dataclass
class Phase:
    """A banner-delimited group of hooks in ``hookspecs.py``."""

    title: str
    description: str = ""
    hooks: list[HookDoc] = field(default_factory=list)


def _project(module: ModuleType) -> str:
    return str(getattr(module, "PROJECT_NAME", "cxbridge"))


def hookspec_opts(function: Callable[..., Any], project: str = "cxbridge") -> dict[str, Any] | None:
    """The pluggy hookspec options of ``function``, or None when it is not a hookspec."""
    opts = getattr(function, f"{project}_spec", None)
    return dict(opts) if isinstance(opts, dict) else None


def hookspec_functions(module: ModuleType | None = None) -> dict[str, Callable[..., Any]]:
    """Every function marked ``@hookspec`` in the module (default :mod:`cxbridge.hookspecs`), by name."""
    module = module or _hookspecs()
    project = _project(module)
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isfunction(obj) and hookspec_opts(obj, project) is not None
    }


def _hookspecs() -> ModuleType:
    from . import hookspecs

    return hookspecs


def format_signature(function: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return``, with the annotations as written in the source."""
    sig = inspect.signature(function)
    params = []
    for p in sig.parameters.values():
        ann = p.annotation
        params.append(p.name if ann is inspect.Parameter.empty else f"{p.name}: {_ann(ann)}")
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {_ann(sig.return_annotation)}"
    return f"{function.__name__}({', '.join(params)}){ret}"


def _ann(ann: Any) -> str:
    return ann if isinstance(ann, str) else inspect.formatannotation(ann)


def _banners(lines: list[str]) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line index after the banner, title, description)`` for every banner block."""
    i = 0
    while i < len(lines):
        if _BANNER_RE.match(lines[i]):
            j = i + 1
            text: list[str] = []
            while j < len(lines) and lines[j].startswith("#") and not _BANNER_RE.match(lines[j]):
                text.append(lines[j].lstrip("#").strip())
                j += 1
            if j < len(lines) and _BANNER_RE.match(lines[j]) and text:
                joined = " ".join(text)
                title, _, description = joined.partition(":")
                yield j + 1, title.strip(), description.strip()
                i = j + 1
                continue
        i += 1


def hook_phases(module: ModuleType | None = None) -> list[Phase]:
    """The hooks of the module grouped by the banner comments of its source, in source order.

    Hooks defined before the first banner land in a phase titled ``Hooks``.
    """
    module = module or _hookspecs()
    functions = hookspec_functions(module)
    project = _project(module)
    lines = inspect.getsource(module).splitlines()
    starts = {start: (title, desc) for start, title, desc in _banners(lines)}
    phases: list[Phase] = []
    current: Phase | None = None
    for index, line in enumerate(lines):
        if index in starts:
            title, desc = starts[index]
            current = Phase(title=title, description=desc)
            phases.append(current)
        match = _DEF_RE.match(line)
        if match and match.group(1) in functions:
            if current is None:
                current = Phase(title="Hooks")
                phases.append(current)
            fn = functions[match.group(1)]
            opts = hookspec_opts(fn, project) or {}
            current.hooks.append(HookDoc(name=fn.__name__, function=fn, firstresult=bool(opts.get("firstresult"))))
    return [p for p in phases if p.hooks]


# --------------------------------------------------------------------------------------------------------------
# Documentation rules
# --------------------------------------------------------------------------------------------------------------


def _example_block(doc: str) -> str | None:
    """The indented block after ``Example::``, dedented, or None."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Example::":
            block: list[str] = []
            for following in lines[i + 1 :]:
                if following.strip() and not following.startswith((" ", "\t")):
                    break
                block.append(following)
            text = textwrap.dedent("\n".join(block)).strip("\n")
            return text or None
    return None


def check_hookspec(function: Callable[..., Any]) -> list[str]:
    """The documentation problems of one hookspec; empty when it follows every rule.

    Rules: a docstring whose first line is a one-line summary; ``:param x:`` for every argument of the
    signature and for no other name; the call semantics in words ("Called ..." or "Stops at ..."); an
    ``Example::`` block containing ``@hookimpl`` and a ``def <hook name>(`` implementation.
    """
    name = function.__name__
    doc = inspect.getdoc(function)
    if not doc:
        return [f"{name}: no docstring"]
    problems = []
    summary = doc.splitlines()[0].strip()
    if not summary:
        problems.append(f"{name}: the docstring does not start with a one-line summary")
    elif len(doc.splitlines()) > 1 and doc.splitlines()[1].strip():
        problems.append(f"{name}: the summary must be one line followed by a blank line")
    args = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    documented = _PARAM_RE.findall(doc)
    for arg in args:
        if arg not in documented:
            problems.append(f"{name}: argument {arg!r} is not documented with ':param {arg}:'")
    for extra in documented:
        if extra not in args:
            problems.append(f"{name}: ':param {extra}:' documents an argument the hook does not have")
    if not any(marker in doc for marker in _SEMANTICS):
        problems.append(f"{name}: the call semantics are not stated ('Called ...' or 'Stops at ...')")
    example = _example_block(doc)
    if example is None:
        problems.append(f"{name}: no 'Example::' block")
    else:
        if "@hookimpl" not in example:
            problems.append(f"{name}: the example does not contain '@hookimpl'")
        if not re.search(rf"\bdef {re.escape(name)}\(", example):
            problems.append(f"{name}: the example does not implement 'def {name}('")
    return problems


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def _doc_to_markdown(doc: str) -> str:
    """Turn a hookspec docstring body into Markdown: ``Example::`` blocks become fenced Python."""
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    params: list[str] = []
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            code = textwrap.dedent("\n".join(block)).strip("\n")
            if line.strip() == "Example::":
                out.extend(["**Example**", "", "```python", code, "```", ""])
            else:
                lang = "toml" if code.lstrip().startswith("[") else ""
                out.extend([_rst_inline(line.rstrip()[:-1]), "", f"```{lang}", code, "```", ""])
            continue
        param = re.match(r"^:param (\w+):\s*(.*)$", line)
        if param:
            words = [param.group(2)]
            i += 1
            while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
                words.append(lines[i].strip())
                i += 1
            params.append(f"- `{param.group(1)}`: {' '.join(words)}")
            if i >= len(lines) or not lines[i].startswith(":param"):
                out.extend(["**Parameters**", "", *params, ""])
                params = []
            continue
        out.append(_rst_inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _rst_inline(line: str) -> str:
    """reST roles and literals to Markdown: ``x`` -> `x`, :class:`~a.B` -> `B`."""
    line = re.sub(r":\w+:`~[\w.]*?\.?(\w+)`", r"`\1`", line)
    line = re.sub(r":\w+:`([^`]+)`", r"`\1`", line)
    return line.replace("``", "`")


def generate_markdown(module: ModuleType | None = None) -> str:
    """The hook reference as Markdown (what ``docs/hooks.md`` holds and ``cxbridge hooks`` shows)."""
    module = module or _hookspecs()
    intro = _doc_to_markdown(inspect.getdoc(module) or "")
    parts = [
        "# Hook reference",
        "",
        "<!-- Generated by `cxbridge hooks --markdown` from cxbridge/hookspecs.py; do not edit by hand. -->",
        "",
        intro.strip(),
        "",
    ]
    for phase in hook_phases(module):
        parts.extend([f"## {phase.title}", ""])
        if phase.description:
            parts.extend([phase.description[0].upper() + phase.description[1:], ""])
        for hook in phase.hooks:
            parts.extend([f"### `{hook.name}`", "", "```python", hook.signature, "```", ""])
            if hook.firstresult:
                parts.extend(["*firstresult*: the call stops at the first implementation returning non-None.", ""])
            parts.extend([_doc_to_markdown(inspect.getdoc(hook.function) or "").strip(), ""])
    return "\n".join(parts).rstrip() + "\n"
