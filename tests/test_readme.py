"""README.md says what a newcomer types and what fastserve does; these hold the parts of it that
name code to the code: the flag tables to ``fastserve --help`` (names and defaults), the
variables it names to the ones the command line reads, and the Layout's order of the compiled
modules to what each one cimports."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from fastserve.cli import UVICORN_ENV_NAMES, build_parser, env_name, uvicorn_env_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = README + "".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md")))


@pytest.fixture
def parser(monkeypatch) -> argparse.ArgumentParser:
    """The parser with its own defaults: no variable of the test's environment in them."""
    for name in list(os.environ):
        if name.startswith(("FASTSERVE_", "UVICORN_")) or name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
            monkeypatch.delenv(name)
    return build_parser()


FLAG = r"(?<![\w-])--[a-z][a-z0-9-]*"


def table_rows() -> Iterator[Tuple[List[str], List[str], str]]:
    """Each row of README's flag tables: every flag its first cell names, the flags its default
    cell speaks of (the first of each part, where ``/`` parts the cell: ``--a`` / ``--b``; the
    flags in parentheses after one are its companions, their defaults in the meaning), and the
    default cell."""
    for line in README.splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        heads = [re.findall(FLAG, part)[0] for part in cells[0].split(" / ")]
        yield re.findall(FLAG, cells[0]), heads, cells[1]


def option_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def help_default(parser: argparse.ArgumentParser, action: argparse.Action) -> str | None:
    """What ``--help`` prints as the flag's default, if it prints one."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    found = re.search(r"\(default: (.*)\)$", text)
    return found.group(1) if found else None


def same_value(readme: str, shown: str) -> bool:
    if readme == shown:
        return True
    try:
        return float(readme) == float(shown)
    except ValueError:
        return False


# The words README's default column uses for a flag that turns something off or on.
OFF_WORDS = ("off",)
ON_WORDS = ("on", "sent", "html on", "offered")


def test_every_flag_in_the_tables_is_one_the_command_line_takes(parser) -> None:
    options = option_actions(parser)
    named = [flag for flags, _, _ in table_rows() for flag in flags]
    assert len(named) > 70
    assert [flag for flag in named if flag not in options] == []


def test_every_flag_of_the_command_line_is_in_readme(parser) -> None:
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README))
    missing = [option for option in option_actions(parser) if option.startswith("--")
               and option not in named and option not in ("--help", "--version")]
    assert missing == []


def test_the_tables_defaults_are_the_ones_help_shows(parser) -> None:
    """Each default README's tables state is what ``--help`` says (or, where help says none,
    what the flag leaves the setting at): a number as a number, a flag that turns something on
    as off, one that turns it off as on, an empty cell for a setting left unset."""
    options = option_actions(parser)
    wrong = []
    for _, flags, default_cell in table_rows():
        defaults = [part.strip() for part in f" {default_cell} ".split(" / ")]
        if len(defaults) != len(flags):
            defaults = [default_cell] * len(flags)  # one default for the row's flags together
        for flag, written in zip(flags, defaults):
            action = options[flag]
            readme = written.replace("`", "").strip()
            readme = "" if readme == '""' else readme
            shown = help_default(parser, action)
            if shown is not None:
                ok = same_value(readme, shown) or readme == "" and shown in ("", "None")
            elif isinstance(action, argparse._StoreTrueAction):
                ok = readme in OFF_WORDS and action.default is False
            elif isinstance(action, argparse._StoreFalseAction):
                ok = readme in ON_WORDS and action.default is True
            elif action.default is None or action.default == []:
                ok = readme == ""
            else:
                ok = same_value(readme, str(action.default))
            if not ok:
                wrong.append((flag, written, shown if shown is not None else action.default))
    assert wrong == []


def test_the_variables_readme_names_are_read(parser) -> None:
    """``FASTSERVE_X`` and ``UVICORN_X`` in README and docs/ each set a flag (or, for
    ``UVICORN_APP``, the target)."""
    fastserve_names = {env_name(action.dest) for action in parser._actions}
    uvicorn_names = {uvicorn_env_name(action.dest) for action in parser._actions}
    uvicorn_names |= {"UVICORN_" + theirs.upper() for theirs in UVICORN_ENV_NAMES}
    named = set(re.findall(r"\b(FASTSERVE|UVICORN)_([A-Z0-9_]*[A-Z0-9])", DOCS))
    assert len(named) > 10
    unknown = [f"{prefix}_{rest}" for prefix, rest in named
               if f"{prefix}_{rest}" not in (fastserve_names if prefix == "FASTSERVE" else uvicorn_names)]
    assert unknown == []


def layout_speedups() -> List[str]:
    """The compiled modules in the order README's Layout lists them."""
    start = README.index("- `fastserve/_speedups/`")
    end = README.index("- `fastserve/server/`", start)
    return re.findall(r"^  - `(\w+)` —", README[start:end], flags=re.MULTILINE)


def test_the_layout_lists_each_compiled_module_after_those_it_cimports() -> None:
    """"Bottom-up, each may call only those listed before it": every module in
    ``fastserve/_speedups`` is listed once, and each cimports (or imports) only modules listed
    before it."""
    listed = layout_speedups()
    folder = ROOT / "fastserve" / "_speedups"
    present = {path.stem for path in folder.iterdir() if path.suffix in (".pyx", ".pxd")}
    assert sorted(listed) == sorted(present)
    late = []
    for module in listed:
        for suffix in (".pyx", ".pxd"):
            path = folder / (module + suffix)
            if not path.exists():
                continue
            used = set(re.findall(r"^\s*(?:from|import) fastserve\._speedups\.(\w+)",
                                  path.read_text(encoding="utf-8"), flags=re.MULTILINE))
            late += [(module, other) for other in used - {module}
                     if listed.index(other) > listed.index(module)]
    assert late == []
