"""Every command line of README.md runs as written after the set-up (issue 14, item 1).

The README's fenced command blocks (and its Python blocks) are extracted and run in order, in a scratch
folder whose ``.venv/bin`` holds this interpreter and its ``annette``, so a line runs exactly as a user
types it from the repository root after the set-up. What keeps a line from running as written is listed
in :data:`RULES`, keyed by command prefix, each with its reason: minimal substitutions for long-running
commands (a campaign's time budget, the simulated backend instead of a real one for benchmarks), or a skip.
A command no rule names fails with a message saying what to add, so a new README line cannot go untested.
Lines that export torchvision models (seconds to a minute each) are marked slow. The lines of one block
depend on each other (a store, then a bundle fitted from it): run the whole file, not single cases.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT_S = 1200

# Whole sections whose commands the test does not run, and why.
SECTION_SKIPS: dict[str, str] = {
    "Set up on a fresh machine": "CI runs the set-up commands itself (venv, install, lint, type checks, tests)",
    "Regenerating the shipped models and figures": (
        "regenerates the shipped bundles and README figures: hours of benchmarks on the development machine"
    ),
    "Many targets": (
        "needs several hosts (DRIVER is a placeholder); tests/test_cluster.py runs the same paths on 127.0.0.1"
    ),
}
# Sections whose plain fenced blocks are not commands (every other plain block is read as commands).
NOT_COMMANDS: dict[str, str] = {"Architecture": "the source tree"}

# Benchmarks and studies measure on the simulated backend (the same protocol and store; it busy-waits a
# modelled latency, scaled down) instead of a real runtime, so that they take seconds.
SIMULATED = (("--backend", "simulated"), ("+--opt", "scale=0.02"))


@dataclass(frozen=True)
class Rule:
    """How the README lines starting with ``prefix`` (after ``.venv/bin/``) are run."""

    prefix: str
    # (option, value): the option's value in the line is replaced (the option is added where absent);
    # "+--opt" adds a repeatable option
    options: tuple[tuple[str, str], ...] = ()
    why: str = ""  # the reason for the changes
    skip: str = ""  # a reason not to run the line at all


RULES: tuple[Rule, ...] = (
    Rule("annette hw "),
    Rule("annette hw check ", (("--rounds", "1"),), why="measures 24 networks twice (a minute): once instead"),
    Rule("annette info "),
    Rule("annette estimate "),
    Rule("annette export "),
    Rule("annette import "),
    Rule("annette measure "),  # a real measurement (seconds)
    Rule("annette bench status "),
    Rule("annette bench workers ", skip="needs a Dask scheduler and workers (tests/test_cluster.py runs them)"),
    Rule("annette bench export "),
    Rule("annette fit "),
    Rule("annette bench ", (*SIMULATED, ("--budget-min", "0.2"), ("--max-configs", "150"), ("--profile-runs", "1")),
         why="a 30-minute campaign: 150 configurations on the simulated backend instead"),
    Rule("annette build ", (*SIMULATED, ("--budget-min", "0.5")),
         why="a 30-minute build: half a minute on the simulated backend instead"),
    Rule("annette calibrate ", (("--minutes", "0.5"),), why="minutes of measurements: half a minute instead"),
    Rule("annette evaluate ", SIMULATED, why="measures networks: on the simulated backend instead"),
    Rule("annette legacy-estimate ", skip="needs ../shared/legacy-annette (tests/test_legacy_cli.py runs it)"),
)


@dataclass(frozen=True)
class Line:
    section: str
    number: int  # 1-based line in README.md
    text: str
    python: bool = False  # a whole Python block (text is the code)

    @property
    def id(self) -> str:
        return f"L{self.number}"


def _blocks(text: str) -> Iterator[tuple[str, int, str, list[str]]]:
    """(section, first line number, language, lines) of every fenced block."""
    section, lang, start, body = "", None, 0, []
    for i, line in enumerate(text.splitlines(), 1):
        if lang is None and line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), i + 1, []
            else:
                yield section, start, lang, body
                lang = None
        elif lang is not None:
            body.append(line)


def readme_lines(text: str | None = None) -> list[Line]:
    """The README's command lines (continuations joined) and Python blocks, in order."""
    out: list[Line] = []
    for section, start, lang, body in _blocks(README.read_text() if text is None else text):
        if lang == "python":
            out.append(Line(section, start, "\n".join(body), python=True))
            continue
        if lang not in ("", "sh", "bash", "shell") or section in NOT_COMMANDS:
            continue  # a directory tree, a table, ...
        pending, at = "", start
        for k, raw in enumerate(body):
            if not pending:
                at = start + k
            pending += raw.rstrip().removesuffix("\\") + (" " if raw.rstrip().endswith("\\") else "")
            if raw.rstrip().endswith("\\"):
                continue
            if pending.strip():
                out.append(Line(section, at, " ".join(pending.split()) if "'" not in pending else pending.strip()))
            pending = ""
    return out


def rule_for(line: Line) -> Rule | None:
    command = line.text.strip().removeprefix(".venv/bin/")
    matching = [r for r in RULES if command.startswith(r.prefix)]
    return max(matching, key=lambda r: len(r.prefix)) if matching else None


def as_run(line: Line) -> str:
    """The line as the test runs it: the rule's substitutions applied (each must still match)."""
    rule = rule_for(line)
    if rule is None:
        raise AssertionError(
            f"README.md:{line.number} ({line.section}): `{line.text}` has no rule in tests/test_readme.py RULES; "
            "add one: run as written, or the minimal substitutions that make it short (with the reason), or a skip"
        )
    text = re.sub(r"\s+#\s.*$", "", line.text)  # a trailing comment (options go before it)
    for option, value in rule.options:
        if option.startswith("+"):
            text += f" {option[1:]} {value}"
            continue
        text, n = re.subn(rf"(^|\s){re.escape(option)}(=|\s+)(\S+)", lambda m, o=option, v=value: f"{m[1]}{o} {v}", text)
        if not n:
            text += f" {option} {value}"
    return text


LINES = readme_lines()


def _param(line: Line) -> object:
    heavy = "torchvision" in line.text
    return pytest.param(line, id=line.id, marks=[pytest.mark.slow] if heavy else [])


def test_readme_has_commands_and_every_one_has_a_rule() -> None:
    sections = {line.section for line in LINES}
    assert {"Set up on a fresh machine", "Quickstart"} <= sections
    for line in LINES:
        if line.section in SECTION_SKIPS or line.python:
            continue
        assert line.text.startswith(".venv/bin/"), (
            f"README.md:{line.number}: `{line.text}` does not run as written after the set-up (which makes "
            ".venv/bin/annette, not an annette on PATH): write .venv/bin/..."
        )
        as_run(line)  # has a rule, and the rule's substitutions match


def test_parser_joins_continuations_and_ignores_trees() -> None:
    text = ("## A\n```\n.venv/bin/annette fit a \\\n    b -o x.json\n```\n## Architecture\n```\nsrc/\n  x.py\n```\n"
            "```python\nx = 1\n```\n")
    got = readme_lines(text)
    assert [(x.number, x.text, x.python) for x in got] == [(3, ".venv/bin/annette fit a b -o x.json", False),
                                                           (12, "x = 1", True)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder laid out like a clone after the set-up: .venv/bin/{python,annette} are this
    interpreter and its CLI."""
    root = tmp_path_factory.mktemp("readme")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # wrappers, not symlinks: a symlinked venv python would look for its pyvenv.cfg here and lose the venv
    for name, target in (("python", f'"{sys.executable}"'), ("annette", f'"{sys.executable}" -m annette.cli.main')):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        script.chmod(0o755)
    return root


@pytest.mark.parametrize("line", [_param(x) for x in LINES])
def test_readme_line_runs(line: Line, workdir: Path) -> None:
    if line.section in SECTION_SKIPS:
        pytest.skip(SECTION_SKIPS[line.section])
    env = {**os.environ, "COLUMNS": "120"}
    if line.python:
        script = workdir / f"readme_{line.number}.py"
        script.write_text(line.text + "\n")
        cmd = [str(workdir / ".venv" / "bin" / "python"), str(script)]
    else:
        rule = rule_for(line)
        if rule is not None and rule.skip:
            pytest.skip(rule.skip)
        cmd = [shutil.which("bash") or "/bin/bash", "-c", as_run(line)]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, (
        f"README.md:{line.number} ({line.section}) failed with exit code {r.returncode}:\n{' '.join(cmd[-1:])}\n"
        f"--- stdout ---\n{r.stdout[-3000:]}\n--- stderr ---\n{r.stderr[-3000:]}"
    )
