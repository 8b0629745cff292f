"""The `frontdesk` command line: thin over the service layer, one module per command group."""
from __future__ import annotations

import click

from .analyze import analyze
from .callbacks import callbacks
from .calls import calls
from .follow import follow
from .register_export import register_group
from .report import report
from .run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="frontdesk")
def main() -> None:
    """frontdesk: a telephone agent for a front desk (answers, scripts, register, callbacks)."""


main.add_command(run)
main.add_command(calls)
main.add_command(follow)
main.add_command(report)
main.add_command(register_group)
main.add_command(callbacks)
main.add_command(analyze)
