"""`frontdesk callbacks`: the callback queue (R11-R15), thin over db/callbacks.py.

    frontdesk callbacks list [--json] [--overdue] [--state STATE]
    frontdesk callbacks next [--worker NAME] [--id ID] [--json]      claim one, show the history
    frontdesk callbacks done ID --outcome reached|resolved|no-answer|busy|voicemail|failed
    frontdesk callbacks reschedule ID --at "tomorrow 09:00"
    frontdesk callbacks add NUMBER --reason TEXT [--note TEXT]
    frontdesk callbacks show ID / cancel ID --note TEXT
Times are shown (and typed) in the desk's time zone ([desk] timezone).
"""
from __future__ import annotations

import getpass
import json
import socket

import click

from .common import config_options, load_config, session_scope

_STATES = ("open", "claimed", "done", "failed", "cancelled")
_OUTCOMES = ("reached", "resolved", "no-answer", "busy", "voicemail", "failed")
_WORKER_HELP = "Who is calling back, as recorded in the attempts. [config callbacks.worker, else user@host]"


def default_worker(config) -> str:
    if config.callbacks.worker:
        return config.callbacks.worker
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "desk"
    return f"{user}@{socket.gethostname()}"[:64]


class _Desk:
    """The configuration, the rules and the register of one command."""

    def __init__(self, config_file, db) -> None:
        from db.models import utcnow

        self.config = load_config(config_file, db)
        self.tz = self.config.tz
        try:
            self.rules = self.config.callbacks.rules(self.tz)
        except ValueError as error:
            raise click.ClickException(f"callbacks: {error}") from None
        self.now = utcnow()
        self.engine, self.Session = session_scope(self.config)  # migrates a new register
        self._queue = None

    @property
    def queue(self):
        """The queue on a writing engine (SQLite: BEGIN IMMEDIATE)."""
        if self._queue is None:
            from db.callbacks import CallbackQueue
            from db.engine import make_engine

            self._queue = CallbackQueue(make_engine(self.config.storage.db, immediate=True), self.rules)
        return self._queue

    def time(self, value) -> str:
        return "" if value is None else value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def close(self) -> None:
        self.engine.dispose()
        if self._queue is not None:
            self._queue.engine.dispose()

    def __enter__(self) -> "_Desk":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@click.group()
def callbacks():
    """The callback queue (R11-R15): every unanswered case is called back, on time, never in
    rest hours, never twice, never forgotten."""


@callbacks.command("list")
@config_options
@click.option("--state", "states", multiple=True, type=click.Choice(_STATES + ("all",)),
              help="Only tasks in this state (repeatable; 'all' for every state). "
                   "[default: open, claimed and failed: what needs a person]")
@click.option("--overdue", is_flag=True, help="Only open tasks past their deadline (R13: three days).")
@click.option("--number", help="Only tasks for this caller number.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: id, number, reason, state, due_at, deadline_at, attempts, "
                   "calls (linked call ids), overdue, ...; times ISO 8601 in the desk's time zone.")
def list_(config_file, db, states, overdue, number, as_json):
    """List callback tasks, the next due first; overdue ones are flagged."""
    from db import callbacks as service

    with _Desk(config_file, db) as desk:
        wanted = None if not states else (list(_STATES) if "all" in states else list(states))
        with desk.Session() as session:
            tasks = service.list_tasks(session, desk.now, states=wanted, overdue=overdue, number=number)
            links = service.linked_calls(session, [t.id for t in tasks])
            rows = [service.task_to_dict(t, desk.tz, desk.now, links[t.id]) for t in tasks]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    _task_table(rows)


@callbacks.command("show")
@config_options
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The task, its attempts and its calls as one JSON object.")
def show(config_file, db, task_id, as_json):
    """Show one task with every attempt and every linked call."""
    from db import callbacks as service
    from db import register

    with _Desk(config_file, db) as desk:
        with desk.Session() as session:
            try:
                task = service.get_task(session, task_id)
            except service.CallbackError as error:
                raise _fail(error) from None
            calls = service.task_calls(session, task)
            out = {"task": service.task_to_dict(task, desk.tz, desk.now, [c.id for c in calls][::-1]),
                   "attempts": [service.attempt_to_dict(a, desk.tz) for a in service.attempts_of(session, task)],
                   "calls": [register.call_to_dict(c, desk.tz) for c in calls]}
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    _print_task(out["task"])
    _print_attempts(out["attempts"])
    _print_calls("Linked calls", out["calls"])


@callbacks.command("next")
@config_options
@click.option("--worker", help=_WORKER_HELP)
@click.option("--id", "task_id", type=int, help="Claim this task (open, or its claim ran out) instead of the next due one.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: task, linked_calls, history (the caller's calls, newest first), attempts; "
                   "task is null when nothing can be claimed.")
def next_(config_file, db, worker, task_id, as_json):
    """Claim the next due task (a lease, callbacks.lease_minutes) and show the caller's history.

    Nothing is claimed in quiet hours or on a day off (R13). Report the call with `done`.
    """
    from db import callbacks as service
    from db import register
    from db.models import CallbackTask

    with _Desk(config_file, db) as desk:
        worker = worker or default_worker(desk.config)
        try:
            desk.queue.sweep()  # calls closed without the hook get their task first
            task = desk.queue.claim(worker, task_id=task_id)
        except service.CallbackError as error:
            raise _fail(error) from None
        if task is None:
            why = _why_nothing(desk, task_id)
            if as_json:
                click.echo(json.dumps({"task": None, "why": why}, ensure_ascii=False))
            else:
                click.echo(why)
            return
        with desk.Session() as session:
            task = session.get(CallbackTask, task.id)
            linked = service.task_calls(session, task)
            out = {"task": service.task_to_dict(task, desk.tz, desk.now, [c.id for c in linked][::-1]),
                   "linked_calls": [register.call_to_dict(c, desk.tz) for c in linked],
                   "history": [register.call_to_dict(c, desk.tz) for c in service.caller_history(session, task)],
                   "attempts": [service.attempt_to_dict(a, desk.tz) for a in service.attempts_of(session, task)]}
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    t = out["task"]
    dial = t["typed_number"] or t["number"]
    click.echo(f"Claimed task {t['id']} for {worker} until {t['lease_until'][:16].replace('T', ' ')}: "
               f"call {dial}" + (f" (caller ID {t['number']})" if t["typed_number"] and t["typed_number"] != t["number"] else ""))
    _print_task(t)
    _print_attempts(out["attempts"][:-1])
    _print_calls("Linked calls", out["linked_calls"])
    _print_calls("Caller's history (newest first)", out["history"])
    click.echo(f"\nThen: frontdesk callbacks done {t['id']} --outcome reached|resolved|no-answer|busy "
               f"[--note TEXT] (or reschedule {t['id']} --at TIME)")


def _why_nothing(desk: _Desk, task_id: int | None) -> str:
    from sqlalchemy import func, select

    from db.models import CallbackTask

    if not desk.rules.is_allowed(desk.now):
        return (f"Quiet hours or a day off (R13): nothing is claimed until "
                f"{desk.time(desk.rules.next_allowed(desk.now))}.")
    with desk.Session() as session:
        if task_id is not None:
            task = session.get(CallbackTask, task_id)
            if task is None:
                raise click.ClickException(f"no callback task {task_id}")
            extra = f" by {task.claimed_by} until {desk.time(task.lease_until)}" if task.state == "claimed" else ""
            return f"Task {task_id} cannot be claimed: it is {task.state}{extra}."
        due = session.scalar(select(func.min(CallbackTask.due_at)).where(CallbackTask.state == "open"))
        lease = session.scalar(select(func.min(CallbackTask.lease_until)).where(CallbackTask.state == "claimed"))
    if due is None and lease is None:
        return "Nothing to call back: the queue is empty."
    first = min(t for t in (due, lease) if t is not None)
    return f"Nothing due now; the next task is due at {desk.time(first)}."


@callbacks.command("done")
@config_options
@click.argument("task_id", type=int)
@click.option("--outcome", required=True, type=click.Choice(_OUTCOMES),
              help="reached/resolved close the task; no-answer, busy, voicemail, failed reschedule it (back-off, "
                   "out of quiet hours).")
@click.option("--note", help="What was said or agreed (kept in the attempt and the task's notes).")
@click.option("--worker", help=_WORKER_HELP + " Must be the one that claimed the task.")
@click.option("--call", "call_ref", metavar="CALL", help="The outbound call in the register (id or uid), if any.")
def done(config_file, db, task_id, outcome, note, worker, call_ref):
    """Report the callback attempt on a task you claimed with `next`."""
    from db import callbacks as service

    with _Desk(config_file, db) as desk:
        worker = worker or default_worker(desk.config)
        try:
            task = desk.queue.finish(task_id, worker, outcome, note=note, call_ref=call_ref)
        except service.CallbackError as error:
            raise _fail(error) from None
        if task.state == "done":
            click.echo(f"Task {task.id}: done ({outcome}).")
            return
        click.echo(f"Task {task.id}: {outcome}; next try at {desk.time(task.due_at)} (attempt {task.attempts}).")
        if desk.rules.is_overdue(task.deadline_at, desk.now, task.state):
            click.echo(f"OVERDUE since {desk.time(task.deadline_at)} (R13: three days): it stays in the queue "
                       f"until someone reaches the customer or cancels it.")


@callbacks.command("reschedule")
@config_options
@click.argument("task_id", type=int)
@click.option("--at", "at_text", required=True, metavar="TIME",
              help="When to call: ISO 8601 (2026-11-26T09:30, desk time unless an offset is given), "
                   "'tomorrow 09:00', '15:30' (today) or '+2h'. Quiet hours are refused.")
@click.option("--note", help="Why (kept in the task's notes).")
@click.option("--worker", help=_WORKER_HELP)
@click.option("--outcome", default="reached", show_default=True, type=click.Choice(_OUTCOMES),
              help="The outcome of your attempt, when you hold the claim (reached: the customer asked for that time).")
def reschedule(config_file, db, task_id, at_text, note, worker, outcome):
    """Call the customer again at an agreed time (R13 再约一个时间)."""
    from db import callbacks as service
    from db.callback_rules import RulesError, parse_when

    with _Desk(config_file, db) as desk:
        worker = worker or default_worker(desk.config)
        try:
            at = parse_when(at_text, desk.now, desk.tz)
            task = desk.queue.reschedule(task_id, at, worker=worker, note=note, outcome=outcome)
        except service.NotAllowed as error:
            raise click.ClickException(f"{error} (try --at '{desk.time(error.next_allowed)}')") from None
        except (service.CallbackError, RulesError) as error:
            raise _fail(error) from None
        click.echo(f"Task {task.id}: due at {desk.time(task.due_at)}.")
        if task.due_at > task.deadline_at:
            click.echo(f"Note: that is after the deadline {desk.time(task.deadline_at)} (R13: three days); "
                       f"the task is listed as overdue from then on.")


@callbacks.command("add")
@config_options
@click.argument("number")
@click.option("--reason", required=True, help="Why to call back (e.g. message, repair follow-up).")
@click.option("--note", help="What the customer wants (kept in the task's notes).")
@click.option("--typed", "typed_number", metavar="NUMBER", help="Another number the customer asked to be called on (R11).")
def add(config_file, db, number, reason, note, typed_number):
    """Add a callback task by hand; a number with an open task gets the note on it instead (R14)."""
    from db import callbacks as service

    with _Desk(config_file, db) as desk:
        try:
            task, created = desk.queue.add(number, reason, note=note, typed_number=typed_number,
                                           by=default_worker(desk.config))
        except service.CallbackError as error:
            raise _fail(error) from None
        if created:
            click.echo(f"Task {task.id} for {task.number}: due at {desk.time(task.due_at)}, "
                       f"deadline {desk.time(task.deadline_at)}.")
        else:
            click.echo(f"{task.number} already has open task {task.id} (R14): note added, "
                       f"due at {desk.time(task.due_at)}.")


@callbacks.command("cancel")
@config_options
@click.argument("task_id", type=int)
@click.option("--note", required=True, help="Why the task is closed without a callback.")
@click.option("--worker", help=_WORKER_HELP)
def cancel(config_file, db, task_id, note, worker):
    """Close a task without a callback (e.g. the customer came by, or an anonymous case was looked at)."""
    from db import callbacks as service

    with _Desk(config_file, db) as desk:
        try:
            task = desk.queue.cancel(task_id, note=note, by=worker or default_worker(desk.config))
        except service.CallbackError as error:
            raise _fail(error) from None
        click.echo(f"Task {task.id}: cancelled.")


# --- output ---------------------------------------------------------------------------------

def _short(value: str | None) -> str:
    return "" if not value else value[:16].replace("T", " ")


def _task_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: never cut a number or a flag short
        console = Console(width=200)
    table = Table(show_edge=False)
    for title in ("ID", "Number", "Reason", "State", "Due", "Deadline", "Tries", "Calls", "Outcome", ""):
        table.add_column(title, overflow="fold")
    for row in rows:
        number = row["number"] + (f" / {row['typed_number']}" if row["typed_number"] and row["typed_number"] != row["number"] else "")
        flag = "[bold red]OVERDUE[/]" if row["overdue"] else (f"claimed by {row['claimed_by']}" if row["state"] == "claimed" else "")
        table.add_row(str(row["id"]), number, row["reason"], row["state"], _day(row["due_at"]),
                      _day(row["deadline_at"]), str(row["attempts"]), ",".join(map(str, row["calls"])),
                      row["outcome"] or "", flag)
    console.print(table)
    if not rows:
        click.echo("(no tasks)")


def _day(value: str | None) -> str:
    """'2026-11-25T14:00:00.000+08:00' -> '11-25 14:00' (desk time)."""
    return "" if not value else value[5:16].replace("T", " ")


def _print_task(t: dict) -> None:
    click.echo(f"\nTask {t['id']}  {t['number']}" + (f"  typed: {t['typed_number']}" if t["typed_number"] else ""))
    click.echo(f"  reason {t['reason']}, state {t['state']}" + (f" ({t['outcome']})" if t["outcome"] else "")
               + f", attempts {t['attempts']}")
    click.echo(f"  due {_short(t['due_at'])}, deadline {_short(t['deadline_at'])}"
               + ("  OVERDUE" if t["overdue"] else ""))
    if t["notes"]:
        for line in t["notes"].splitlines():
            click.echo(f"  | {line}")


def _print_attempts(attempts: list[dict]) -> None:
    if not attempts:
        return
    click.echo("\nAttempts:")
    for a in attempts:
        click.echo(f"  {_short(a['started_at'])}  {a['worker']}  {a['outcome'] or 'in progress'}"
                   + (f"  {a['note']}" if a["note"] else ""))


def _print_calls(title: str, calls: list[dict]) -> None:
    click.echo(f"\n{title}:")
    if not calls:
        click.echo("  (none)")
    for c in calls:
        talk = f"{c['talk_ms'] / 1000:.0f}s" if c.get("talk_ms") else ""
        extra = "  ".join(x for x in (c.get("category") or "", talk, c.get("recording") or "",
                                      f"typed {c['callback_number']}" if c.get("callback_number") else "",
                                      (c.get("notes") or "").replace("\n", " ")[:60]) if x)
        click.echo(f"  #{c['id']}  {_short(c['started_at'])}  {c['outcome'] or c['status']}  {extra}".rstrip())


@callbacks.command("dial")
@config_options
@click.option("--sip", "listen", metavar="HOST:PORT", help="Address to use for SIP (UDP). [the config's sip.listen]")
@click.option("--once", is_flag=True, help="Place the next due callback, wait until it is recorded, then exit.")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="With --once: give up after this many seconds (default: wait).")
def dial(config_file, db, listen, once, timeout_s):
    """Let the agent call customers back itself (R13): it claims due tasks outside quiet hours,
    rings the number (the number typed on the keypad first), plays who is calling and why, and
    asks for 1 (the matter is settled) or 2 (leave a message).  Voicemail or no key is never
    "resolved": the task is rescheduled.  Also answers incoming calls while it runs.
    """
    from .run import serve

    config = load_config(config_file, db, {"sip": {"listen": listen}})
    serve(config, dial=True, dial_once=once, timeout_s=timeout_s)
