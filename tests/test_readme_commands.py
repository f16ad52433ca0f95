"""The README's `zoo` commands parse as written, and its finetune commands make valid configs."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _zoo_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("zoo "):
                commands.append(line)
    return commands


def test_the_readme_shows_zoo_commands():
    assert len(_zoo_commands()) >= 10


@pytest.mark.parametrize("line", _zoo_commands())
def test_readme_command_parses(line):
    from zoo.cli import build_parser, finetune_config

    args = build_parser().parse_args(shlex.split(line)[1:])
    if args.command == "finetune":
        finetune_config(args).validate()
