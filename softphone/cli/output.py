"""Output options every listing command shares (like sqlite-utils' `output_options`).

A table (rich) by default, `--json` for one JSON object per line, `--csv` for CSV with a header.
Rows are plain dicts (db.register.call_to_dict and friends); the table shows chosen columns,
JSON and CSV show every key.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

Columns = Sequence[tuple[str, str]]  # (key, title)


def output_options(command: Callable) -> Callable:
    """--json and --csv; the command receives `as_json` and `as_csv`."""
    command = click.option("--csv", "as_csv", is_flag=True,
                           help="CSV with a header line (every field).")(command)
    command = click.option("--json", "as_json", is_flag=True,
                           help="One JSON object per line (every field, stable keys).")(command)
    return command


def output_format(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    return "json" if as_json else "csv" if as_csv else "table"


def dumps(value: Any) -> str:
    """One line of JSON as the CLI writes it: UTF-8 text kept readable (中文 stays 中文)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def console():
    """A rich console on the current stdout (colour only on a terminal)."""
    import os

    from rich.console import Console

    stream = sys.stdout
    # a pipe or a file has no width: do not squeeze tables into 80 columns there
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def emit_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: Columns,
              cell: Callable[[str, Any], str] | None = None, title: str | None = None) -> int:
    """Write `rows` as `fmt` (table/json/csv); returns how many were written."""
    count = 0
    if fmt == "json":
        for row in rows:
            click.echo(dumps(row))
            count += 1
        return count
    if fmt == "csv":
        buffer = io.StringIO()
        writer: Any = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(row), extrasaction="ignore")
                writer.writeheader()
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
            click.echo(buffer.getvalue(), nl=False)
            buffer.seek(0)
            buffer.truncate()
            count += 1
        return count
    from rich.table import Table

    table = Table(show_edge=False, title=title)
    for _, heading in columns:
        table.add_column(heading)
    show = cell or (lambda key, value: "" if value is None else str(value))
    for row in rows:
        table.add_row(*(show(key, row.get(key)) for key, _ in columns))
        count += 1
    console().print(table)
    return count


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
