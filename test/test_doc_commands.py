"""Every `lgtc ...` command in the documentation's bash blocks parses: the subcommand and options
exist, and a `lgtc train --set KEY=VALUE` names a setting of that algorithm's trainer with a value
of its type. Nothing runs. (models/README.md once passed `threads=1` through `--set`, which
`lgtc train` refuses.)"""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from lgtc_ros import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each `lgtc` line of a bash block, continuation lines joined, comments
    and lines with placeholders (`...`, `a|b`, `<x>`) left out."""
    out = []
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line.startswith("lgtc ") and not re.search(r"\.\.\.|\||<", line):
                    out.append((str(path.relative_to(ROOT)), line))
    return out


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) > 40 and any("--set" in c for _, c in COMMANDS)


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_a_documented_command_parses(where, command):
    args = cli.build_parser().parse_args(shlex.split(command)[1:])  # argparse exits on an unknown option
    if args.command == "train":
        trainer_args, _ = cli.trainer_for(args.algo or cli.TRAIN_DEFAULTS["algo"])
        cli.train_overrides(args.set or [], {f.name: f for f in dataclasses.fields(trainer_args)})
