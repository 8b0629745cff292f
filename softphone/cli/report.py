"""`frontdesk report`: how the desk keeps the rules: R1 (three rings), the unanswered cases
(R12) and the callback rules (R13, R14), by day and by hour; thin over db.reports."""
from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Any

import click

from .calls import range_options, window
from .common import config_options, load_config, session_scope
from .output import console, dumps

DEFAULT_WINDOW = "30d"  # a month: the supervisor's usual view, and fast on any register size
_SUMMARY = [
    ("calls", "calls"), ("answered", "answered"),
    ("answered_within_3_rings", "answered within three rings (R1)"),
    ("r1_missed", "R1 broken (answered late or left ringing)"),
    ("missed", "missed (hung up while ringing)"), ("abandoned", "abandoned (during the greeting)"),
    ("silent", "silent (R6)"), ("noisy", "noisy (R7)"), ("messages", "messages (R11)"),
    ("after_hours", "after hours"), ("busy", "busy (all lines taken)"),
    ("in_progress", "in progress"),
]
_CALLBACKS = [
    ("callbacks_opened", "callback tasks opened"),
    ("callbacks_done_within_3_days", "done within three days (R13)"),
    ("callbacks_open", "still open"), ("callbacks_overdue", "overdue (past the three days)"),
    ("callbacks_failed", "failed"), ("callback_attempts", "attempts"),
    ("callback_attempts_in_quiet_hours", "attempts in quiet hours (must be 0, R13)"),
    ("callback_duplicates", "numbers with two open tasks (must be 0, R14)"),
]


def quiet_hours(config) -> tuple[str, ...]:
    """The callback quiet hours as 'HH:MM-HH:MM' spans: the callback settings when they
    exist, else R13's example (12:00-14:00, 21:00-08:00)."""
    from db.reports import DEFAULT_QUIET_HOURS

    section = getattr(config, "callbacks", None)
    value = None
    for name in ("quiet_hours", "quiet"):
        value = getattr(section, name, None) if section is not None else None
        if value is not None:
            break
    if value is None:
        return DEFAULT_QUIET_HOURS
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    spans = []
    for span in value:
        if isinstance(span, (tuple, list)) and len(span) == 2 and isinstance(span[0], time):
            spans.append(f"{span[0]:%H:%M}-{span[1]:%H:%M}")
        else:
            spans.append(str(span).strip())
    return tuple(spans)


@click.command()
@config_options
@range_options
@click.option("--json", "as_json", is_flag=True,
              help="The whole report as ONE JSON object (calls, answered_within_3_rings, missed, "
                   "abandoned, callbacks_open, callbacks_overdue, by_day, by_hour, ...).")
@click.option("--all", "whole", is_flag=True,
              help="The whole register (default without --from/--to: the last 30 days).")
@click.option("--plot", "plot_file", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also draw calls and answer times per hour and the ring-to-answer "
                   "distribution into this PNG.")
def report(config_file, db, start, end, whole, as_json, plot_file):
    """Report on the house rules: answered within three rings (R1), ring-to-answer times,
    missed and abandoned calls, silent/noisy/after-hours/busy, messages, and the callback
    rules (R13, R14), with figures by day and by hour. Default: the last 30 days."""
    from db.reports import report as build

    if whole and (start or end):
        raise click.UsageError("--all is the whole register: give it without --from/--to")
    config = load_config(config_file, db)
    default = None if whole or start or end else DEFAULT_WINDOW
    since, until = window(config, start or default, end)
    engine, Session = session_scope(config)
    now = datetime.now(timezone.utc)
    try:
        _summarise(config.storage.db, since, now)
        with Session() as session:
            figures = build(session, since=since, until=until, tz=config.tz, now=now,
                            max_rings=config.answer.max_rings, quiet_hours=quiet_hours(config))
    finally:
        engine.dispose()
    # R1 on the configured cadence: ring k starts at (k-1) periods; the last allowed ring ends here
    figures["r1_limit_ms"] = config.answer.max_rings * sum(config.answer.ring_cadence)
    if plot_file:
        from .plot import draw

        try:
            draw(figures, plot_file)
        except ImportError:
            raise click.ClickException("--plot needs matplotlib (pip install 'matplotlib>=3.8')") from None
        except OSError as error:
            raise click.ClickException(f"cannot write {plot_file}: {error}") from None
    if as_json:
        click.echo(dumps(figures))
        return
    _print(figures)
    if plot_file:
        click.echo(f"plot written to {plot_file}")


def _summarise(url: str, since: datetime | None, now: datetime) -> None:
    """Bring the hour summary up to date (db/rollup.py) when the window reaches back past its
    horizon. A register this user cannot write (read-only role or file) is read as it is:
    the report is the same, only slower over the hours not summarised yet."""
    from sqlalchemy.exc import SQLAlchemyError

    from db import rollup

    if since is not None and since >= now - rollup.SETTLE:
        return  # nothing in the window can be summarised
    try:
        rollup.refresh_url(url, now)
    except (SQLAlchemyError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        click.echo(f"note: the hour summary was not brought up to date ({reason}); "
                   "the hours not summarised are read from the calls", err=True)


def _pct(value: Any) -> str:
    return "" if value is None else f"{value:.1f} %"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value / 1000:.1f} s"


def _print(f: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    span = f"{(f['from'] or 'the beginning')[:16]} to {(f['to'] or 'now')[:16]}".replace("T", " ")
    table = Table(title=f"Front desk report, {span}", show_edge=False, show_header=False)
    table.add_column("figure")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for key, label in _SUMMARY:
        share = ""
        if key == "answered_within_3_rings":
            share = _pct(f["answered_within_3_rings_pct"]) + " of answered"
        elif f["calls"] and key not in ("calls",):
            share = _pct(100.0 * f[key] / f["calls"])
        table.add_row(label, str(f[key]), share)
    ring, lost = f["ring_to_answer_ms"], f["time_to_abandon_ms"]
    table.add_row("ring to answer: mean / p50 / p90 / max",
                  f"{_ms(ring['mean'])} / {_ms(ring['p50'])} / {_ms(ring['p90'])} / {_ms(ring['max'])}", "")
    table.add_row("time to abandon (missed + abandoned): mean / median",
                  f"{_ms(lost['mean'])} / {_ms(lost['p50'])}", "")
    resolution = f.get("percentile_resolution_ms") or 1
    if resolution > 1:
        table.add_row(f"  (p50, p90, median to {resolution} ms, from the hour summary)", "", "")
    for key, label in _CALLBACKS:
        share = (_pct(f["callbacks_done_within_3_days_pct"]) + " of opened"
                 if key == "callbacks_done_within_3_days" else "")
        table.add_row(label, str(f[key]), share)
    out.print(table)
    if f["by_day"]:
        days = Table(title="By day", show_edge=False)
        for title in ("date", "calls", "answered", "R1 met", "missed", "abandoned", "mean ring"):
            days.add_column(title, justify="right" if title != "date" else "left")
        for d in f["by_day"]:
            days.add_row(d["date"], str(d["calls"]), str(d["answered"]),
                         _pct(d["answered_within_3_rings_pct"]), str(d["missed"]),
                         str(d["abandoned"]), _ms(d["ring_to_answer_mean_ms"]))
        out.print(days)
    hours = [h for h in f["by_hour"] if h["calls"]]
    if hours:
        table = Table(title="By hour of the day", show_edge=False)
        for title in ("hour", "calls", "answered", "R1 met", "missed", "abandoned", "mean ring",
                      "max ring"):
            table.add_column(title, justify="right")
        for h in hours:
            table.add_row(f"{h['hour']:02d}:00", str(h["calls"]), str(h["answered"]),
                          _pct(h["answered_within_3_rings_pct"]), str(h["missed"]),
                          str(h["abandoned"]), _ms(h["ring_to_answer_mean_ms"]),
                          _ms(h["ring_to_answer_max_ms"]))
        out.print(table)
