"""Register values in words for people: event lines (follow, show, replay) and outcomes.

Pure functions of plain data (event_to_dict / FeedItem.to_dict rows); an event kind this module
does not know yet is still shown, as its kind and its data.
"""
from __future__ import annotations

import json
from typing import Any

# outcome -> (中文, English); the words of the paper register's 处理结果 column
OUTCOME_WORDS = {
    "handled": ("已接待", "handled"),
    "message": ("已留言", "message taken"),
    "missed": ("未接听（振铃中挂断）", "missed (hung up while ringing)"),
    "abandoned": ("接听后对方挂断", "abandoned (hung up during the greeting)"),
    "silent": ("无声电话", "silent line"),
    "noisy": ("杂音过大，听不清", "noisy line"),
    "after_hours": ("非工作时间来电", "after hours"),
    "busy": ("占线（线路全忙）", "busy (all lines taken)"),
    "rejected": ("已拒接", "rejected"),
    "interrupted": ("通话中断（系统）", "interrupted (system)"),
    None: ("通话中", "in progress"),
}
# callback task state -> (中文, English); the 回电情况 column
CALLBACK_WORDS = {
    "open": ("待回电", "to call back"),
    "claimed": ("回电中", "calling back"),
    "done": ("已回电", "called back"),
    "failed": ("回电未成功", "callback failed"),
    "cancelled": ("已取消", "cancelled"),
}
# kind -> rich style for the follow/show lines
STYLES = {"ringing": "yellow", "answered": "green", "ended": "bold", "hangup": "magenta",
          "cancelled": "red", "refused": "red", "error": "bold red", "dtmf": "cyan",
          "script": "blue", "prompt": "blue", "callback_queued": "bold yellow"}


def outcome_words(outcome: str | None, lang: str = "en") -> str:
    zh, en = OUTCOME_WORDS.get(outcome, (outcome or "", outcome or ""))
    return zh if lang == "zh" else en


def callback_words(state: str | None, lang: str = "en", outcome: str | None = None) -> str:
    if state is None:
        return ""
    zh, en = CALLBACK_WORDS.get(state, (state, state))
    words = zh if lang == "zh" else en
    return f"{words}（{outcome}）" if outcome and lang == "zh" else (
        f"{words} ({outcome})" if outcome else words)


def _s(ms: Any) -> str:
    return f"{ms / 1000:.1f} s" if isinstance(ms, (int, float)) else "?"


def event_words(kind: str, data: Any) -> str:
    """What happened, in a few words: `answered after 2 rings (8.0 s), R1 met`."""
    d = data if isinstance(data, dict) else {}
    if kind == "ringing":
        plan = f", answer planned after {_s(d['answer_in_ms'])}" if "answer_in_ms" in d else ""
        return f"ringing{plan}"
    if kind == "answered":
        rings = d.get("rings")
        r1 = {True: "R1 met", False: "R1 BROKEN"}.get(d.get("r1_met"), "")
        return (f"answered after {rings} ring{'s' if rings != 1 else ''} "
                f"({_s(d.get('ring_ms'))}){', ' + r1 if r1 else ''}")
    if kind == "confirmed":
        return "call set up (ACK)"
    if kind == "prompt":
        text = f": {d['text']}" if d.get("text") else ""
        return f"prompt {d.get('prompt', '?')} ({_s(d.get('ms'))}){text}"
    if kind == "prompt_done":
        return f"prompt {d.get('prompt', '?')} {'done' if d.get('completed', True) else 'cut short'}"
    if kind == "script":
        name = f"{d['script']}: " if d.get("script") else ""
        rest = {k: v for k, v in d.items() if k not in ("script", "step")}
        extra = f" {_compact(rest)}" if rest else ""
        return f"script {name}{d.get('step', '?')}{extra}"
    if kind == "speech_start":
        return f"caller speaking ({d.get('level_dbfs', '?')} dBFS)"
    if kind == "speech_end":
        return f"caller stopped speaking ({d.get('level_dbfs', '?')} dBFS)"
    if kind == "line":
        rest = {k: v for k, v in d.items() if k != "state"}
        return f"line {d.get('state', '?')}{' ' + _compact(rest) if rest else ''}"
    if kind == "dtmf":
        return f"DTMF {d.get('digit', '?')}"
    if kind in ("hold", "resume"):
        return "caller put the call on hold" if kind == "hold" else "caller resumed the call"
    if kind == "hangup":
        reason = f" ({d['reason']})" if d.get("reason") else ""
        return f"hung up by the {d.get('by', '?')}{reason}"
    if kind == "cancelled":
        return "caller hung up while ringing (CANCEL)"
    if kind == "ended":
        first = f", {d['hung_up_first']} hung up first" if d.get("hung_up_first") else ""
        return f"ended: {outcome_words(d.get('outcome'))}{first}"
    if kind == "refused":
        return f"refused {d.get('status', '')} {d.get('reason', '')}".rstrip()
    if kind == "callback_queued":
        typed = f", typed {d['typed_number']}" if d.get("typed_number") else ""
        due = f", due {d['due_at'][:16].replace('T', ' ')}" if d.get("due_at") else ""
        return f"callback queued for {d.get('number', '?')}{typed} ({d.get('reason', '?')}){due}"
    return f"{kind}{' ' + _compact(d if d else data) if data else ''}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def offset(ms: int | None) -> str:
    """+m:ss.mmm (or -m:ss.mmm) for a time relative to the ring."""
    if ms is None:
        return ""
    sign = "-" if ms < 0 else "+"
    ms = abs(int(ms))
    return f"{sign}{ms // 60000}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
