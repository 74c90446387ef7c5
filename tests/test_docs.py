"""The documentation tells the truth: every Python example of docs/ runs and prints what the page says, the
"Switching from the SDK" table is both signatures, and the build's coverage check (docs/hooks.py) finds what
is missing. (The strict build itself is `make docs`, run by `make test`.)"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import griffe
import pytest
from fusion.fs_sync import fsync as sdk_fsync

from fusionsync import fsync
from tests.helpers import RunningServer, start_server

DOCS = Path(__file__).resolve().parents[1] / "docs"
QUICK_START_CSV = b"pair,rate\nEURUSD,1.09\n"
# a ```python block, the line before it, and the ```text block right after it (the output it prints), if any
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```\n(?:\s*```text\n(?P<out>.*?)```)?", re.S)


def examples() -> Iterator[Any]:
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            name = f"{page.relative_to(DOCS)}:{line}"
            if match["before"].startswith("<!-- not run:"):
                assert match["before"].endswith("-->") and len(match["before"]) > len("<!-- not run:  -->"), name
                continue
            yield pytest.param(match["code"], match["out"], id=name)


@pytest.fixture
def quick_start_server(tmp_path: Path) -> Iterator[RunningServer]:
    """The catalog the quick start ends with, its credentials file at catalog/client_credentials.json."""
    server = start_server(tmp_path / "catalog")
    server.create_dataset("common", "FX_RATES", title="FX rates")
    server.create_product("common", "FX", ["FX_RATES"])
    assert server.upload("common", "FX_RATES", "20240101", "csv", QUICK_START_CSV).status == 200
    yield server
    server.stop()


@pytest.mark.parametrize(("code", "output"), list(examples()))
def test_the_python_examples_run_and_print_what_the_page_says(
    quick_start_server: RunningServer, tmp_path: Path, code: str, output: str | None
) -> None:
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if output is not None:
        assert done.stdout == output, done.stdout


def test_there_are_examples_and_fragments_say_why_they_do_not_run() -> None:
    assert len(list(examples())) >= 5
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))
    assert re.findall(r"<!-- not run: ([^>]+) -->\n```python", text) == ["it runs until Ctrl+C"]


def shown(parameter: inspect.Parameter) -> str:
    """A default as the table shows it."""
    if parameter.default is inspect.Parameter.empty:
        return "required"
    if parameter.default == logging.ERROR and parameter.name == "log_level":
        return "`logging.ERROR`"
    return f"`{parameter.default!r}`".replace("'", '"')


def test_the_switching_table_is_both_signatures() -> None:
    text = (DOCS / "switching.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", text, re.M)
    ours = inspect.signature(fsync).parameters
    sdk = inspect.signature(sdk_fsync).parameters
    assert [name for name, _, _ in rows] == list(ours)
    assert list(sdk) == list(ours)[: len(sdk)]  # the SDK's parameters come first, in its order
    for name, sdk_default, our_default in rows:
        assert our_default.strip() == shown(ours[name]), name
        assert sdk_default.strip() == (shown(sdk[name]) if name in sdk else "—"), name
        if name not in sdk:
            assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_coverage_check_names_each_omission(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package."""\n\n'
        '__all__ = ["good", "bare", "half", "Thing", "hidden", "__version__"]\n'
        '__version__ = "1"\n\n'
        'def good(a: int) -> int:\n    """Fine.\n\n    Args:\n        a: A number.\n    """\n    return a\n\n'
        "def bare() -> None:\n    pass\n\n"
        'def half(a: int, b: int) -> None:\n    """Half.\n\n    Args:\n        a: A number.\n    """\n\n'
        "class Thing:\n"
        '    """A thing."""\n\n'
        '    def __init__(self, size: int) -> None:\n        """Make one.\n\n        Args:\n'
        '            size: How big.\n        """\n\n'
        "    def method(self) -> None:\n        pass\n\n"
        "    def _private(self) -> None:\n        pass\n\n"
        'def hidden() -> None:\n    """Documented but on no page."""\n'
    )
    hooks = load_hooks()
    loaded = griffe.load("pkg", search_paths=[str(tmp_path)], resolve_aliases=True)
    assert isinstance(loaded, griffe.Module)
    rendered = {"pkg.good", "pkg.bare", "pkg.half", "pkg.Thing"}
    assert hooks.problems(loaded, rendered) == [
        "pkg.bare has no docstring",
        "pkg.half: parameter 'b' is not described in its docstring",
        "pkg.Thing.method is public but has no docstring",
        "pkg.hidden is public (in __all__) but no reference page shows it (::: pkg.hidden)",
    ]


def test_the_package_has_nothing_undocumented() -> None:
    """What the strict build checks, without building: every public name of fusionsync is fully described."""
    hooks = load_hooks()
    loaded = griffe.load("fusionsync", search_paths=[str(DOCS.parent / "src")], resolve_aliases=True)
    assert isinstance(loaded, griffe.Module)
    names = {f"fusionsync.{n}" for n in hooks.public_names(loaded)}
    assert hooks.problems(loaded, names) == []


def test_each_readme_passage_the_docs_include_is_closed() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    starts = re.findall(r"<!-- --8<-- \[start:([\w-]+)\] -->", readme)
    ends = re.findall(r"<!-- --8<-- \[end:([\w-]+)\] -->", readme)
    assert starts == ends and len(set(starts)) == len(starts)
    included = re.findall(r'^--8<-- "README\.md:([\w-]+)"$', "\n".join(p.read_text() for p in DOCS.rglob("*.md")), re.M)
    assert set(included) == set(starts)
