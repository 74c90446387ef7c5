"""Build checks of the documentation site (an MkDocs hook, see ``mkdocs.yml``).

Every public name of ``fusionsync`` (its ``__all__``) must have a docstring and appear in the reference
(a page renders it with ``::: fusionsync.NAME``); every parameter of a public function or class must be
described in its docstring (``Args:``, or ``Attributes:`` for a dataclass's fields), and every public method
or property of a public class must have a docstring (mkdocstrings leaves out members without one). Each
omission is a warning, so ``mkdocs build --strict`` (run by ``make test``) fails on it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

import griffe

log = logging.getLogger("mkdocs.hooks.api_coverage")
ANCHOR = re.compile(r'\bid="(fusionsync\.[A-Za-z_][\w.]*)"')
_rendered: set[str] = set()


def public_names(package: griffe.Module) -> list[str]:
    """The names of ``__all__`` that need documenting (not dunders such as ``__version__``)."""
    exported = package.exports or []
    return [str(name) for name in exported if not str(name).startswith("__")]


def documented_parameters(obj: griffe.Object) -> set[str]:
    """The names an object's docstring describes in its ``Args:`` and ``Attributes:`` sections."""
    if obj.docstring is None:
        return set()
    names: set[str] = set()
    for section in obj.docstring.parse("google"):
        if section.kind in (griffe.DocstringSectionKind.parameters, griffe.DocstringSectionKind.attributes):
            names.update(item.name.lstrip("*") for item in section.value)
    return names


def signature_of(obj: griffe.Object) -> Iterable[griffe.Parameter]:
    """The parameters a caller passes: a function's, or a class's ``__init__``'s (``self`` left out)."""
    if isinstance(obj, griffe.Function):
        return [p for p in obj.parameters if p.name not in ("self", "cls")]
    if isinstance(obj, griffe.Class):
        return [p for p in obj.parameters if p.name not in ("self", "cls")]
    return []


def problems(package: griffe.Module, rendered: set[str]) -> list[str]:
    """Every omission in the documentation of ``package``'s public names, one sentence each.

    ``rendered`` holds the anchors of the objects the site shows (``fusionsync.fsync`` …).
    """
    found: list[str] = []
    for name in public_names(package):
        path = f"{package.path}.{name}"
        obj = package[name]
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
        if path not in rendered:
            found.append(f"{path} is public (in __all__) but no reference page shows it (::: {path})")
        if not target.docstring or not target.docstring.value.strip():
            found.append(f"{path} has no docstring")
            continue
        described = documented_parameters(target)
        if isinstance(target, griffe.Class) and "__init__" in target.members:
            described |= documented_parameters(target.members["__init__"])
        for parameter in signature_of(target):
            if parameter.name not in described:
                found.append(f"{path}: parameter {parameter.name!r} is not described in its docstring")
        if isinstance(target, griffe.Class):
            for member_name, member in target.members.items():
                if member_name.startswith("_") or member.is_alias:
                    continue
                if (member.is_function or "property" in member.labels) and not member.docstring:
                    found.append(f"{path}.{member_name} is public but has no docstring")
    return found


def on_pre_build(config: Any) -> None:
    _rendered.clear()


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    _rendered.update(ANCHOR.findall(html))
    return html


def on_post_build(config: Any) -> None:
    source = os.path.join(os.path.dirname(config.config_file_path), "src")
    package = griffe.load("fusionsync", search_paths=[source], resolve_aliases=True)
    assert isinstance(package, griffe.Module)
    for problem in problems(package, _rendered):
        log.warning("undocumented: %s", problem)
