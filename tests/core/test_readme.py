"""The README tells the truth: its Python blocks run or are verbatim from tested code, its commands exist.

- The Python API block is executed against a demo workspace (seed data + config made by the demo), with the
  workspace path adjusted.
- Every other ```python block must appear verbatim in a source file of the repository (the plugin snippet is
  from ``examples/hello-plugin``, whose tests run it).
- Every ``cxbridge <command>`` in the "Everyday commands" table and in the demo's "explore" lines exists:
  ``cxbridge <command> --help`` exits 0 (with the installed plugins, e.g. ``segments``).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SOURCE_GLOBS = ("cxbridge/**/*.py", "examples/**/*.py", "plugins/**/*.py", "adapters/**/*.py")
DEMO_REF = "cxbridge-demo/cxbridge.toml"


def _blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)]


def _api_blocks() -> list[str]:
    return [b for b in _blocks("python") if "Bridge.from_config" in b]


def _other_blocks() -> list[str]:
    return [b for b in _blocks("python") if "Bridge.from_config" not in b]


def test_readme_has_the_python_api_block() -> None:
    assert len(_api_blocks()) == 1
    assert DEMO_REF in _api_blocks()[0]


@pytest.mark.parametrize("block", _other_blocks(), ids=lambda b: b.strip().splitlines()[-1].strip()[:40])
def test_python_snippets_are_verbatim_from_tested_sources(block: str) -> None:
    snippet = block.strip("\n")
    homes = [p for pattern in SOURCE_GLOBS for p in ROOT.glob(pattern)
             if "/tests/" not in str(p) and snippet in p.read_text(encoding="utf-8", errors="replace")]
    assert homes, f"README snippet not found verbatim in any source file:\n{snippet}"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``cxbridge-demo/``: the demo's seed data and config, synced once."""
    from cxbridge.bridge import Bridge
    from cxbridge.demo.run import prepare_workspace
    from cxbridge.plugins import get_plugin_manager

    folder = tmp_path_factory.mktemp("readme")
    pm = get_plugin_manager()
    config = prepare_workspace(folder / "cxbridge-demo", pm)
    assert config == folder / DEMO_REF
    with Bridge.from_config(config, pm=pm) as bridge:
        bridge.sync()
    return folder


def test_python_api_block_runs_on_the_demo_workspace(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo_dir)  # the README runs from the folder `make demo` ran in
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_api_blocks()[0], "README.md", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    name, _, tier = lines[0].rpartition(" ")
    assert name in ("Alexander Neumann", "Alex Neumann")
    assert tier in ("bronze", "silver", "gold", "platinum")
    assert sorted(lines[1:]) == ["callcentre CC-5124", "shop 1124"]


# --------------------------------------------------------------------------------------------------- commands


def _command_cells() -> list[str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Everyday commands", 1)[1].split("\n## ", 1)[0]
    cells = []
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line[1:].replace("\\|", "\0").split("|", 1)[0].replace("\0", "|")
            cells += re.findall(r"`(cxbridge [^`]+)`", first)
    # the "explore the workspace" lines after the demo
    cells += [m.group(1) for m in re.finditer(r"^\.venv/bin/(cxbridge .+)$", text, flags=re.M)]
    return cells


def _command_paths() -> list[tuple[str, ...]]:
    """Candidate command paths: every token up to the first option/placeholder, alternatives expanded."""
    paths: list[tuple[str, ...]] = []
    for cell in _command_cells():
        tokens = cell.split()[1:]
        while tokens and tokens[0] == "--config":
            tokens = tokens[2:]
        words: list[list[str]] = []
        for token in tokens:
            if token.startswith(("[", "<", "-")) or not re.fullmatch(r"[a-z][a-z0-9_|-]*", token):
                break
            words.append(token.split("|"))
        prefix: list[tuple[str, ...]] = [()]
        for alts in words:
            prefix = [(*p, a) for p in prefix for a in alts]
        paths += [p for p in prefix if p not in paths]
    return paths


def test_readme_names_commands() -> None:
    paths = _command_paths()
    assert ("sync",) in paths and ("customers", "show") in paths and ("export", "customers") in paths


@pytest.fixture(scope="module")
def cli() -> object:
    from cxbridge.cli.app import create_app

    return create_app()


def _resolve(cli: object, path: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of ``path`` that names commands (the rest are arguments, like ``export customers``)."""
    import click
    import typer

    command = typer.main.get_command(cli)  # type: ignore[arg-type]
    ctx = click.Context(command)
    resolved: list[str] = []
    for word in path:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        if sub is None:
            return (*resolved, word)  # unknown: --help will fail and name it
        resolved.append(word)
        command = sub
    return tuple(resolved)


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_readme_command_exists(cli: object, path: tuple[str, ...]) -> None:
    from typer.testing import CliRunner

    words = _resolve(cli, path)
    result = CliRunner().invoke(cli, [*words, "--help"])  # type: ignore[arg-type]
    assert result.exit_code == 0, f"`cxbridge {' '.join(words)} --help` failed: {result.output.strip()[-300:]}"


def test_explore_commands_run_on_the_demo_workspace(demo_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The lines the README suggests after `make demo` work (on a synced demo workspace)."""
    import shlex

    from cxbridge.cli.runner import run

    tmp_path = demo_dir
    monkeypatch.chdir(tmp_path)
    text = README.read_text(encoding="utf-8")
    lines = [m.group(1) for m in re.finditer(r"^\.venv/bin/cxbridge (.+)$", text, flags=re.M)]
    assert lines
    for line in lines:
        args = shlex.split(line.split("  #")[0].replace("<email or id>", "alexander.neumann124@example.com"))
        capsys.readouterr()
        code = run(args)
        captured = capsys.readouterr()
        assert code == 0, f"`cxbridge {line}` exited {code}: {captured.err.strip()[-400:]}"
        if "search mueller" in line:
            assert "mueller" in captured.out and "customer(s) matching 'mueller'" in captured.out
        if "export customers" in line:
            assert len((tmp_path / "customers.csv").read_text(encoding="utf-8").splitlines()) > 240


def test_relative_links_point_to_files_in_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    targets = {m.group(1).split("#")[0] for m in re.finditer(r"\]\(([^)\s]+)\)", text)}
    local = sorted(t for t in targets if t and not re.match(r"[a-z]+:", t))
    assert local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == [], f"README links to files that do not exist: {missing}"


def test_make_targets_named_by_the_readme_exist() -> None:
    text = README.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    named = set(re.findall(r"`?make ([a-z][a-z-]*)", text))
    assert {"demo", "test"} <= named
    missing = sorted(t for t in named if not re.search(rf"^{re.escape(t)}:", makefile, flags=re.M))
    assert missing == []


def test_config_examples_validate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every ```toml block with a [store] table is a valid cxbridge.toml for the installed plugins."""
    import tomllib

    from cxbridge.config import config_from_dict
    from cxbridge.plugins import get_plugin_manager

    examples = [b for b in _blocks("toml") if re.search(r"^\[store\]", b, flags=re.M)]
    assert examples
    for block in examples:
        for var in re.findall(r'env = "([A-Z0-9_]+)"', block):
            monkeypatch.setenv(var, "secret-for-the-readme-test")
        config_from_dict(tomllib.loads(block), workspace=tmp_path, pm=get_plugin_manager())


def test_extras_named_by_the_readme_exist() -> None:
    import tomllib

    text = README.read_text(encoding="utf-8")
    match = re.search(r"extras: ([^)]*)\)", text)
    assert match
    named = set(re.findall(r"`([a-z-]+)`", match.group(1)))
    named |= {e for group in re.findall(r'pip install "cxbridge\[([a-z,-]+)\]"', text) for e in group.split(",")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert named and named <= set(extras), sorted(named - set(extras))
