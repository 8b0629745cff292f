"""docs/cli.md from the commands' own --help (docs as code).

    python -m softphone.cli.docgen > docs/cli.md      (make docs)

Walks the whole click tree under `frontdesk`, so commands added later are picked up by
themselves; tests/unit/test_cli_docs.py fails when docs/cli.md differs from this output or when
a command or an option has no help text.
"""
from __future__ import annotations

from collections.abc import Iterator

import click

WIDTH = 100
HEADER = """# `frontdesk` command line reference

Generated from the commands' `--help` by `python -m softphone.cli.docgen > docs/cli.md`
(`make docs`); `tests/unit/test_cli_docs.py` fails when this file is out of date or a command
or option has no help text. Do not edit by hand.
"""


def walk(command: click.Command, name: str = "frontdesk",
         parent: click.Context | None = None) -> Iterator[tuple[str, click.Command, click.Context]]:
    """(full name, command, its context) for the command and everything below it, in order."""
    settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(command, info_name=name, parent=parent, **settings)
    yield ctx.command_path, command, ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, sub_name, ctx)


def missing_help(root: click.Command) -> list[str]:
    """'frontdesk calls list' or 'frontdesk calls list --limit' for each item without help."""
    missing = []
    for path, command, _ in walk(root):
        if not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing.append(f"{path} {max(param.opts, key=len)}")
    return missing


def render(root: click.Command) -> str:
    parts = [HEADER]
    for path, command, ctx in walk(root):
        parts.append(f"## {path}\n\n```\n{command.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> None:
    from softphone.cli import main as frontdesk

    click.echo(render(frontdesk), nl=False)


if __name__ == "__main__":
    main()
