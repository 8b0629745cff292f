"""`frontdesk register export`: the paper register (电话接待记录本) as CSV (with BOM), xlsx, json."""
from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from softphone.cli import main
from softphone.cli.describe import outcome_words
from tests.unit.test_cli_day import desk_day  # noqa: F401 (fixture)

ZH = ["编号", "日期", "时间", "来电人", "来电号码", "来电内容", "分类", "接待人", "处理结果", "回电情况"]
EN = ["No.", "Date", "Time", "Caller", "Number", "Content", "Category", "Handled by", "Result",
      "Callback"]


def export(day, *args):
    result = CliRunner().invoke(main, ["register", "export", *day.window, *args, *day.args()])
    assert result.exit_code == 0, result.output
    return result


def test_csv_in_chinese_with_a_bom_for_excel(desk_day):
    raw = export(desk_day).stdout_bytes
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ZH
    body = rows[1:]
    assert [r[4] for r in body] == [c.plan.caller for c in desk_day.calls]  # oldest first
    assert [r[2][:5] for r in body] == [c.plan.clock for c in desk_day.calls]
    assert {r[1] for r in body} == {desk_day.day.isoformat()}
    assert [r[8] for r in body] == [outcome_words(c.outcome, "zh") for c in desk_day.calls]
    first = body[0]
    assert (first[5], first[6], first[7]) == ("3栋2单元漏水", "报修", "desk1")
    callbacks = {c.plan.caller: r[9] for c, r in zip(desk_day.calls, body)}
    assert callbacks["13800000004"] == "待回电" and callbacks["13800000005"].startswith("已回电")
    assert callbacks["13800000002"] == ""


def test_json_in_english(desk_day):
    rows = json.loads(export(desk_day, "--format", "json", "--lang", "en").stdout)
    assert isinstance(rows, list) and list(rows[0]) == EN
    assert [r["Number"] for r in rows] == [c.plan.caller for c in desk_day.calls]
    assert rows[0]["Category"] == "repair" and rows[0]["Result"] == "handled"
    assert rows[3]["Callback"] == "to call back"


def test_xlsx_file(desk_day, tmp_path):
    import openpyxl  # a test dependency (openpyxl>=3.1): a missing one fails, never skips
    out = tmp_path / "register.xlsx"
    result = export(desk_day, "--format", "xlsx", "--out", str(out))
    assert f"{len(desk_day.calls)} calls written" in result.output
    sheet = openpyxl.load_workbook(out).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == ZH and len(rows) == 1 + len(desk_day.calls)
    assert rows[1][4] == desk_day.calls[0].plan.caller and rows[1][6] == "报修"


def test_an_empty_period_is_a_header_or_an_empty_array(desk_day):
    args = ["register", "export", "--from", "today", *desk_day.args()]
    out = CliRunner().invoke(main, args).stdout_bytes.decode("utf-8-sig")
    assert out.splitlines() == [",".join(ZH)]
    assert json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout) == []
