"""`frontdesk calls`: the telephone reception register, call by call (R16, R17).

list / show / replay / note; each command parses its options, calls db.register (and
recordings.playback for replay) and formats what comes back.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from . import describe
from .common import config_options, ctrl_c_ends, load_config, session_scope
from .output import dumps, emit_rows, output_format, output_options
from .when import HELP as TIME_HELP, BadTime, parse_range

_COLUMNS = [("id", "ID"), ("started_at", "Started"), ("caller", "Caller"), ("rings", "Rings"),
            ("ring_ms", "Ring ms"), ("r1_met", "R1"), ("talk_ms", "Talk ms"), ("outcome", "Outcome"),
            ("category", "Category"), ("hung_up_first", "Hung up first")]


@click.group()
def calls():
    """The register: list calls, show or replay one call, classify it."""


def _cell(key: str, value: Any) -> str:
    if key == "started_at" and value:
        return value[:19].replace("T", " ")
    if key == "r1_met" and value is not None:
        return "yes" if value else "NO"
    return "" if value is None else str(value)


def range_options(command):
    """--from TIME / --to TIME (the window on started_at)."""
    command = click.option("--to", "end", metavar="TIME",
                           help=f"Calls that started before this ({TIME_HELP}; a date counts "
                                "whole).")(command)
    command = click.option("--from", "start", metavar="TIME",
                           help=f"Calls that started at or after this ({TIME_HELP}).")(command)
    return command


def window(config, start: str | None, end: str | None):
    try:
        return parse_range(start, end, config.tz, datetime.now(timezone.utc))
    except BadTime as error:
        raise click.BadParameter(str(error), param_hint="'--from' / '--to'") from None


def filters(outcome: str | None, category: str | None) -> dict[str, Any]:
    from db.register import UnknownValue, category_of, outcomes_of

    try:
        return {"outcome": outcomes_of(outcome) if outcome else None,
                "category": category_of(category) if category else None}
    except UnknownValue as error:
        raise click.BadParameter(str(error)) from None


@calls.command("list")
@config_options
@range_options
@click.option("--outcome", metavar="OUTCOME[,OUTCOME]",
              help="Only calls with this outcome: handled, message, missed, abandoned, silent, "
                   "noisy, after_hours, busy, rejected, interrupted (comma-separated for several).")
@click.option("--caller", metavar="NUMBER", help="Only calls from this number.")
@click.option("--r1-missed", is_flag=True,
              help="Only calls that broke R1: answered after more than three rings (answer.max_rings), "
                   "or left ringing longer than that.")
@click.option("--category", help="Only calls classified so (咨询 投诉 报修 找人 找错 其他, or consultation, "
                                 "complaint, repair, looking-for-someone, wrong-number, other).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many calls, newest first.")
@output_options
def list_(config_file, db, start, end, outcome, caller, r1_missed, category, limit, as_json, as_csv):
    """List calls in the register, newest first (table, --json lines or --csv)."""
    from db import register

    fmt = output_format(as_json, as_csv)
    config = load_config(config_file, db)
    since, until = window(config, start, end)
    wanted = filters(outcome, category)
    engine, Session = session_scope(config)
    try:
        with Session() as session:
            rows = [register.call_to_dict(c, config.tz) for c in register.list_calls(
                session, since=since, until=until, caller=caller, limit=limit, r1_missed=r1_missed,
                max_rings=config.answer.max_rings, **wanted)]
    finally:
        engine.dispose()
    emit_rows(rows, fmt, _COLUMNS, _cell)


def _recording_path(config, recorded: str | None) -> Path | None:
    """Where the recording is from here: as stored, else next to the config file."""
    if not recorded:
        return None
    path = Path(recorded)
    if path.is_absolute() or path.exists() or not config.source:
        return path
    beside = Path(config.source).resolve().parent / path
    return beside if beside.exists() else path


def _find(session, call_ref: str):
    from db import register

    call = register.get_call(session, call_ref)
    if call is None:
        raise click.ClickException(f"no call {call_ref!r} in the register (give its id, uid or "
                                   "SIP Call-ID; `frontdesk calls list` shows them)")
    return call


def _ring_start(events: list[dict]) -> int:
    """t_ms of the ring start: the `ringing` event (t_ms counts from the INVITE)."""
    return next((e["t_ms"] for e in events if e["kind"] == "ringing"), 0)


def _audio_start(events: list[dict]) -> int | None:
    """t_ms where the recording starts: its first frame if logged, else the answer."""
    first = next((e["t_ms"] for e in events if e["kind"] == "recording"
                  and isinstance(e["data"], dict) and e["data"].get("first_frame")), None)
    return first if first is not None else next(
        (e["t_ms"] for e in events if e["kind"] == "answered"), None)


def _load_call(config, call_ref: str) -> dict[str, Any]:
    """The call, its events (with since_ring_ms), its callback task, as plain data."""
    from db import register

    engine, Session = session_scope(config)
    try:
        with Session() as session:
            call = _find(session, call_ref)
            row = register.call_to_dict(call, config.tz)
            events = [register.event_to_dict(e, config.tz)
                      for e in register.call_events(session, call)]
            row.setdefault("callback_number", getattr(call, "callback_number", None))
            row["callback"] = _task(session, register.callback_task(session, call), config.tz)
    finally:
        engine.dispose()
    ring = _ring_start(events)
    for event in events:
        event["since_ring_ms"] = event["t_ms"] - ring
    row["ring_start_ms"] = ring
    row["events"] = events
    return row


def _task(session, task, tz) -> dict[str, Any] | None:
    """The call's callback task with its attempts (db.callbacks' own plain-data form)."""
    if task is None:
        return None
    from db import callbacks

    row = callbacks.task_to_dict(task, tz, datetime.now(timezone.utc),
                                 callbacks.linked_calls(session, [task.id])[task.id])
    row["attempt_log"] = [callbacks.attempt_to_dict(a, tz)
                          for a in callbacks.attempts_of(session, task)]
    return row


def _event_line(event: dict, tz_time: bool = True) -> str:
    when = event["at"][11:23] if tz_time and event.get("at") else ""
    return (f"{describe.offset(event['since_ring_ms']):>10}  {when}  "
            f"{describe.event_words(event['kind'], event['data'])}")


def _print_header(row: dict, recording_state: str | None = None) -> None:
    echo = click.echo
    r1 = {True: "met", False: "BROKEN", None: "-"}[row["r1_met"]]
    name = f" ({row['caller_name']})" if row.get("caller_name") else ""
    echo(f"call {row['id']}  {row['started_at']}  from {row['caller']}{name} to {row['called']}"
         f"  agent {row['agent']}")
    echo(f"outcome {describe.outcome_words(row['outcome'])}; rings {row['rings']} "
         f"({row['ring_ms']} ms), R1 {r1}; talk {row['talk_ms']} ms; "
         f"hung up first: {row['hung_up_first'] or '-'}")
    if row.get("category") or row.get("notes"):
        echo(f"category {row.get('category') or '-'}: {row.get('notes') or ''}".rstrip())
    if row.get("scripts"):
        echo(f"scripts {', '.join(map(str, row['scripts']))}")
    if row.get("dtmf"):
        echo(f"DTMF {row['dtmf']}")
    if row.get("recording"):
        state = {"ok": "matches the register", "mismatch": "DOES NOT MATCH the register",
                 "missing": "FILE MISSING", "unchecked": "no checksum in the register"}
        echo(f"recording {row['recording']} ({row['recording_ms']} ms)")
        echo(f"  sha256 {row['recording_sha256'] or '-'}: "
             f"{state.get(recording_state or '', recording_state or '')}")
    task = row.get("callback")
    if task:
        due = (task["due_at"] or "")[:16].replace("T", " ")
        echo(f"callback task {task['id']} for {task['number']}: {describe.callback_words(task['state'])}"
             f"{', ' + task['outcome'] if task['outcome'] else ''}; due {due}; "
             f"{task['attempts']} attempt(s)")


@calls.command("show")
@config_options
@click.argument("call_ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True,
              help="The call, its events and its callback task as one JSON object.")
def show(config_file, db, call_ref, as_json):
    """Show one call (ID: its id, uid or SIP Call-ID) with its whole timeline.

    Times are relative to the start of ringing (the ring start); the recording is checked
    against the SHA-256 in the register.
    """
    from recordings.playback import check

    config = load_config(config_file, db)
    row = _load_call(config, call_ref)
    row["recording_check"] = check(_recording_path(config, row["recording"]),
                                   row["recording_sha256"])
    if as_json:
        click.echo(dumps(row))
        return
    _print_header(row, row["recording_check"])
    click.echo("")
    for event in row["events"]:
        click.echo(_event_line(event))


@calls.command("replay")
@config_options
@click.argument("call_ref", metavar="ID")
@click.option("--speed", type=click.FloatRange(0.25, 4.0), default=1.0, show_default=True,
              help="Play this many times as fast (0.25-4; the pitch moves with it).")
@click.option("--channel", type=click.Choice(["caller", "agent", "both"]), default="both",
              show_default=True, help="Which side to hear: caller (left), agent (right), or both.")
@click.option("--out", "out_file", metavar="FILE.wav", type=click.Path(dir_okay=False),
              help="Write the (selected, speed-changed) audio to this WAV file instead of playing.")
@click.option("--device", type=int, metavar="N",
              help="PortAudio output device number (default: the system's default output).")
@click.option("--rerun", "rerun_flag", is_flag=True,
              help="Re-run the call flow offline on the timeline and the recording; exit 1 if it decides differently.")
@click.option("--force", is_flag=True,
              help="Play even when the file does not match the SHA-256 in the register.")
def replay(config_file, db, call_ref, speed, channel, out_file, device, force, rerun_flag):
    """Replay a call: print its timeline while its recording plays on the sound card.

    Each timeline line is printed when the audio reaches it. Exits with 1 and a message when
    the recording is missing, does not match the register (unless --force) or there is no
    sound device.  --rerun plays nothing: it runs the call flow again offline, on the timeline
    and the caller's side of the recording, and shows that it makes the same decisions.
    """
    from recordings import playback

    config = load_config(config_file, db)
    row = _load_call(config, call_ref)
    path = _recording_path(config, row["recording"])
    try:
        rate, samples = playback.load(path, row["recording_sha256"], force=force)
    except playback.PlaybackError as error:
        raise click.ClickException(str(error)) from None
    if rerun_flag:
        _rerun(config, row, samples)
        return
    audio = playback.change_speed(playback.select_channel(samples, channel), rate, speed)
    seconds = len(audio) / rate
    sides = {"both": "both sides (stereo)", "caller": "the caller", "agent": "the agent"}[channel]
    if out_file:
        playback.export(out_file, audio, rate)
        click.echo(f"wrote {out_file}: {seconds:.1f} s of {sides} at {speed:g}x")
        return
    try:
        output = playback.open_output(1 if audio.ndim == 1 else audio.shape[1], rate, device)
    except playback.PlaybackError as error:
        raise click.ClickException(str(error)) from None
    with output:
        _print_header(row, playback.check(path, row["recording_sha256"]))
        click.echo(f"playing {seconds:.1f} s of {sides} at {speed:g}x")
        start = _audio_start(row["events"])
        marks = []
        for event in row["events"]:
            line = _event_line(event)
            if start is None or event["t_ms"] <= start:
                click.echo(line)
            else:
                marks.append((playback.frame_at(event["t_ms"] - start, rate, speed), line))
        ctrl_c_ends()
        try:
            output.play(audio, marks, on_mark=click.echo)
        except KeyboardInterrupt:
            click.echo("stopped")


def _write_scope(config):
    """A short write transaction next to the agent's writer: BEGIN IMMEDIATE on SQLite."""
    from db.engine import make_engine, session_factory

    engine, _ = session_scope(config)  # opens (and migrates) the register, or says why not
    engine.dispose()
    engine = make_engine(config.storage.db, immediate=True)
    return engine, session_factory(engine)


@calls.command("note")
@config_options
@click.argument("call_ref", metavar="ID")
@click.option("--category", required=True,
              help="R16: 咨询 投诉 报修 找人 找错 其他, or consultation, complaint, repair, "
                   "looking-for-someone, wrong-number, other.")
@click.option("--text", help="What the call was about (replaces the notes).")
@click.option("--append", is_flag=True, help="Add --text to the notes on a new line instead.")
def note(config_file, db, call_ref, category, text, append):
    """Classify a call and write what it was about (R16), straight into the register."""
    from db import register

    try:
        category = register.category_of(category)
    except register.UnknownValue as error:
        raise click.BadParameter(str(error), param_hint="'--category'") from None
    config = load_config(config_file, db)
    engine, Session = _write_scope(config)
    try:
        with Session.begin() as session:
            call = _find(session, call_ref)
            register.note_call(session, call, category, text, append=append)
            call_id, notes = call.id, call.notes
    finally:
        engine.dispose()
    click.echo(f"call {call_id}: {category}{': ' + notes if notes else ''}")


def _rerun(config, row: dict, samples) -> None:
    """`calls replay --rerun`: the recorded decisions next to the re-run ones."""
    from callflows.flow import FlowSettings

    from ..rerun import agree, recorded_decisions, rerun

    if row.get("direction") == "out":
        raise click.ClickException("--rerun replays calls to the desk, not the callbacks it placed")
    settings = FlowSettings(**{name: getattr(config.flow, name) for name in FlowSettings.__dataclass_fields__
                               if hasattr(config.flow, name)})
    recorded = recorded_decisions(row["events"])
    again = rerun(row["events"], samples[:, 0], settings)
    width = max([len(d.what) for d in recorded] + [8])
    click.echo(f"{'recorded':<{width + 10}}  re-run")
    for index in range(max(len(recorded), len(again))):
        a = recorded[index] if index < len(recorded) else None
        b = again[index] if index < len(again) else None
        left = f"{a.t_ms / 1000:8.3f}s {a.what}" if a else ""
        right = f"{b.t_ms / 1000:8.3f}s {b.what}" if b else ""
        click.echo(f"{left:<{width + 10}}  {right}")
    if not agree(recorded, again):
        raise click.ClickException("the re-run decided differently (a different configuration, or a defect)")
    click.echo("same decisions")
