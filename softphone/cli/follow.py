"""`frontdesk follow`: the desk live, one line per call event, from the register.

Thin over db.follow.Follower: poll by increasing primary key every --interval (0.2 s), print
what is new. Works on SQLite and PostgreSQL, any number of followers at once; Ctrl-C ends it
with exit code 0.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone

import click

from . import describe
from .common import config_options, ctrl_c_ends, load_config, session_scope
from .output import console, dumps
from .when import HELP as TIME_HELP, BadTime, parse_time

RETRY_MAX_S = 5.0


@click.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (JSON lines).")
@click.option("--since", metavar="TIME",
              help=f"Start with the events since then ({TIME_HELP}); default: only new ones.")
@click.option("--caller", metavar="NUMBER", help="Only calls from this number.")
@click.option("--outcome", metavar="OUTCOME[,OUTCOME]",
              help="Only calls that end so (missed, abandoned, ...); a call's events are shown "
                   "when it has ended, since only then is its outcome known.")
@click.option("--interval", type=click.FloatRange(0.05, 10.0), default=0.2, show_default=True,
              help="Seconds between two looks at the register.")
@click.option("--for", "duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this many seconds (default: run until Ctrl-C).")
def follow(config_file, db, as_json, since, caller, outcome, interval, duration):
    """Follow the desk live: ringing, answers (with rings), prompts, scripts, line changes, DTMF,
    hang-ups and callbacks queued, one line each as they reach the register."""
    from db.follow import Follower
    from .calls import filters

    config = load_config(config_file, db)
    try:
        start = parse_time(since, config.tz, datetime.now(timezone.utc)) if since else None
    except BadTime as error:
        raise click.BadParameter(str(error), param_hint="'--since'") from None
    outcomes = filters(outcome, None)["outcome"]
    engine, Session = session_scope(config)
    follower = Follower(since=start, caller=caller, outcomes=outcomes)
    show = _json_printer(config.tz) if as_json else _text_printer(config.tz)
    deadline = None if duration is None else time.monotonic() + duration
    ctrl_c_ends()
    try:
        with Session() as session:
            follower.start(session)
        _loop(follower, Session, show, interval, deadline)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follower ends: exit 0, no traceback
    except BrokenPipeError:  # `frontdesk follow | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        engine.dispose()


def _loop(follower, Session, show, interval: float, deadline: float | None) -> None:
    failing = None
    delay = interval
    while deadline is None or time.monotonic() < deadline:
        try:
            with Session() as session:
                while True:
                    for item in follower.poll(session):
                        show(item)
                    if not follower.behind:
                        break
            if failing:
                click.echo("register is back", err=True)
                failing, delay = None, interval
        except Exception as error:  # noqa: BLE001 - an outage: say so once, keep trying
            from sqlalchemy.exc import DBAPIError, OperationalError

            if not isinstance(error, (DBAPIError, OperationalError)):
                raise
            if failing is None:
                click.echo(f"register unavailable, retrying: {str(error).splitlines()[0]}",
                           err=True)
            failing, delay = error, min(max(delay * 2, interval), RETRY_MAX_S)
        wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)


def _json_printer(tz):
    def show(item) -> None:
        click.echo(dumps(item.to_dict(tz)))
        sys.stdout.flush()
    return show


def _text_printer(tz):
    from rich.text import Text

    out = console()

    def show(item) -> None:
        when = item.at.astimezone(tz).strftime("%H:%M:%S.%f")[:12]
        who = f"task {item.id}" if item.source == "callback" else f"call {item.call}"
        line = Text(f"{when}  {who:<10} {item.caller or '-':<14} ")
        line.append(describe.event_words(item.kind, item.to_dict(tz)["data"]),
                    style=describe.STYLES.get(item.kind, ""))
        out.print(line)
        out.file.flush()
    return show
