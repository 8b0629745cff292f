"""`frontdesk register export`: the telephone reception register (电话接待记录本) as the desk keeps
it on paper: date, time, caller, number, content, category, handled by, result, callback.

CSV carries a UTF-8 BOM so that Excel opens the Chinese text correctly; xlsx needs openpyxl;
json is one JSON array. Rows stream from db.register.register_rows, oldest first.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import click

from . import describe
from .calls import range_options, window
from .common import config_options, load_config, session_scope

HEADERS = {
    "zh": ("编号", "日期", "时间", "来电人", "来电号码", "来电内容", "分类", "接待人", "处理结果",
           "回电情况"),
    "en": ("No.", "Date", "Time", "Caller", "Number", "Content", "Category", "Handled by",
           "Result", "Callback"),
}
CATEGORY_EN = {"咨询": "consultation", "投诉": "complaint", "报修": "repair",
               "找人": "looking for someone", "找错": "wrong number", "其他": "other"}


@click.group("register")
def register_group():
    """The telephone reception register (电话接待记录本) as a whole."""


def register_line(call: Any, task_state: str | None, task_outcome: str | None, tz: Any,
                  lang: str) -> list[Any]:
    """One line of the paper register, in the order of HEADERS."""
    started = call.started_at.astimezone(tz)
    category = call.category or ""
    if lang == "en":
        category = CATEGORY_EN.get(category, category)
    if getattr(call, "resolved_task_id", None) is not None:  # R14: this call closed the task
        callback = "来电已处理，回电任务完成" if lang == "zh" else "customer called in: task closed"
    else:
        callback = describe.callback_words(task_state, lang, task_outcome)
    typed = getattr(call, "callback_number", None)
    if callback and typed and typed != call.caller:
        callback += f"（回电号码 {typed}）" if lang == "zh" else f" (call back on {typed})"
    return [call.id, started.strftime("%Y-%m-%d"), started.strftime("%H:%M:%S"),
            call.caller_name or "", call.caller, call.notes or "", category, call.agent,
            describe.outcome_words(call.outcome, lang), callback]


@register_group.command("export")
@config_options
@range_options
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "json"]), default="csv",
              show_default=True, help="csv (UTF-8 with BOM, opens in Excel), xlsx, or json (one array).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="Column headers and words in Chinese (the desk's register) or English.")
@click.option("--out", "out_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write to FILE (default: standard output; xlsx needs a file or a pipe).")
def export(config_file, db, start, end, fmt, lang, out_file):
    """Export the register for a period (default: today), oldest call first."""
    from db.register import register_rows

    config = load_config(config_file, db)
    since, until = window(config, start or ("today" if end is None else None), end)
    stdout = sys.stdout.buffer
    if fmt == "xlsx" and out_file is None and stdout.isatty():
        raise click.ClickException("xlsx is binary: give --out FILE.xlsx (or pipe the output)")
    engine, Session = session_scope(config)
    try:
        with Session() as session:
            lines = (register_line(call, state, outcome, config.tz, lang)
                     for call, state, outcome in register_rows(session, since=since, until=until))
            target = open(out_file, "wb") if out_file else stdout  # noqa: SIM115
            try:
                count = WRITERS[fmt](target, HEADERS[lang], lines)
            finally:
                if out_file:
                    target.close()
                else:
                    target.flush()
    except BrokenPipeError:  # `frontdesk register export | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    except OSError as error:
        raise click.ClickException(f"cannot write {out_file or 'the output'}: {error}") from None
    finally:
        engine.dispose()
    if out_file:
        click.echo(f"{count} calls written to {out_file}", err=True)


def _csv(target: BinaryIO, headers: Iterable[str], lines: Iterator[list[Any]]) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    target.write("\ufeff".encode())  # BOM: Excel then reads the file as UTF-8
    writer.writerow(headers)
    count = 0
    for line in lines:
        writer.writerow(line)
        count += 1
        if buffer.tell() > 1 << 16:
            target.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    target.write(buffer.getvalue().encode())
    return count


def _json(target: BinaryIO, headers: Iterable[str], lines: Iterator[list[Any]]) -> int:
    keys = list(headers)
    count = 0
    target.write(b"[")
    for line in lines:
        text = json.dumps(dict(zip(keys, line)), ensure_ascii=False)
        target.write(((",\n" if count else "\n") + text).encode())
        count += 1
    target.write(b"\n]\n" if count else b"]\n")
    return count


def _xlsx(target: BinaryIO, headers: Iterable[str], lines: Iterator[list[Any]]) -> int:
    try:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font
    except ImportError:
        raise click.ClickException("--format xlsx needs openpyxl (pip install 'openpyxl>=3.1')") from None
    book = Workbook(write_only=True)
    sheet = book.create_sheet("电话接待记录本")
    widths = (8, 12, 10, 12, 16, 40, 10, 12, 22, 18)
    for i, width in enumerate(widths):
        sheet.column_dimensions[chr(ord("A") + i)].width = width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    cells = []
    for title in headers:
        cell = WriteOnlyCell(sheet, value=title)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    count = 0
    for line in lines:
        sheet.append(line)
        count += 1
    buffer = io.BytesIO()
    book.save(buffer)
    target.write(buffer.getvalue())
    return count


WRITERS = {"csv": _csv, "json": _json, "xlsx": _xlsx}
