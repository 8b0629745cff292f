"""`frontdesk calls`: the telephone reception register, call by call."""
from __future__ import annotations

import json

import click

from .common import config_options, load_config, session_scope

_COLUMNS = [("id", "ID"), ("started_at", "Started"), ("caller", "Caller"), ("rings", "Rings"),
            ("ring_ms", "Ring ms"), ("r1_met", "R1"), ("talk_ms", "Talk ms"), ("outcome", "Outcome"),
            ("hung_up_first", "Hung up first")]


@click.group()
def calls():
    """The register: list calls, show one call's timeline."""


@calls.command("list")
@config_options
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many calls, newest first.")
@click.option("--outcome", help="Only calls with this outcome (handled, missed, abandoned, ...).")
@click.option("--caller", help="Only calls from this number.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (stable keys).")
def list_(config_file, db, limit, outcome, caller, as_json):
    """List calls in the register, newest first."""
    from db import register

    config = load_config(config_file, db)
    engine, Session = session_scope(config)
    with Session() as session:
        rows = [register.call_to_dict(c, config.tz)
                for c in register.list_calls(session, outcome=outcome, caller=caller, limit=limit)]
    engine.dispose()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    _table(rows)


@calls.command("show")
@config_options
@click.argument("call_ref")
@click.option("--json", "as_json", is_flag=True, help="The call and its events as one JSON object.")
def show(config_file, db, call_ref, as_json):
    """Show one call (by id, uid or SIP Call-ID) with its whole timeline."""
    from db import register

    config = load_config(config_file, db)
    engine, Session = session_scope(config)
    with Session() as session:
        call = register.get_call(session, call_ref)
        if call is None:
            raise click.ClickException(f"no call {call_ref!r} in the register")
        row = register.call_to_dict(call, config.tz)
        events = [register.event_to_dict(e, config.tz) for e in register.call_events(session, call)]
    engine.dispose()
    if as_json:
        click.echo(json.dumps({**row, "events": events}, ensure_ascii=False))
        return
    width = max(len(k) for k in row)
    for key, value in row.items():
        if value is not None:
            click.echo(f"{key:<{width}}  {value}")
    click.echo("")
    for event in events:
        data = "" if not event["data"] else " " + json.dumps(event["data"], ensure_ascii=False)
        click.echo(f"{event['t_ms'] / 1000:>9.3f}s  {event['kind']}{data}")


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for _, title in _COLUMNS:
        table.add_column(title)
    for row in rows:
        cells = []
        for key, _ in _COLUMNS:
            value = row.get(key)
            if key == "started_at" and value:
                value = value[:19].replace("T", " ")
            if key == "r1_met" and value is not None:
                value = "yes" if value else "NO"
            cells.append("" if value is None else str(value))
        table.add_row(*cells)
    Console().print(table)
