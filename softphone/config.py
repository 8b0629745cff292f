"""Configuration: an optional TOML file, then environment, then command-line flags.

Every key has a type and a default that make `frontdesk run` work with no file at all (direct
SIP on 127.0.0.1:5060, SQLite and recordings under var/).  An unknown key or a bad value stops
start-up with a `ConfigError` that names the key (`answer.after_rings: must be ...`).

The register is found the same way by every command: `--db URL`, else $FRONTDESK_DB, else
`storage.db` in the config file (`--config FILE`, else $FRONTDESK_CONFIG), else the default.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DB = "sqlite:///var/frontdesk.db"


class ConfigError(ValueError):
    """A configuration problem; the message starts with the key it is about."""


# --- value parsers (raise ValueError with a short description) -------------------------------

def _hostport(value: Any) -> tuple[str, int]:
    text = str(value).strip()
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, "5060"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT, got {value!r}")
    return host, int(port)


def _optional_hostport(value: Any) -> tuple[str, int] | None:
    return None if value in ("", None) else _hostport(value)


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value).strip())
            except ValueError:
                raise ValueError(f"must be a whole number, got {value!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _optional_ms(value: Any) -> int | None:
    return None if value in ("", None, -1) else _int_range(0, 600_000)(value)


def _port_range(value: Any) -> tuple[int, int]:
    low, high = (value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split("-"))[:2]
    low, high = _int_range(1024, 65535)(low), _int_range(1024, 65535)(high)
    if high - low < 1:
        raise ValueError(f"must be LOW-HIGH with room for at least one call, got {value!r}")
    return low, high


def _cadence(value: Any) -> tuple[int, int]:
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    if len(parts) != 2:
        raise ValueError(f"must be ON,OFF in milliseconds, got {value!r}")
    on, off = (_int_range(100, 10_000)(p) for p in parts)
    return on, off


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _text(value: Any) -> str:
    if not isinstance(value, (str, int)):
        raise ValueError(f"must be text, got {value!r}")
    return str(value)


def _digits(value: Any) -> str:
    text = _text(value).strip()
    if not text.isdigit():
        raise ValueError(f"must be digits, got {value!r}")
    return text


def _timezone(value: Any) -> str:
    text = _text(value)
    if text:
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {text!r} (use a name like Asia/Shanghai)") from None
    return text


def _db_url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("sqlite:", "postgresql")):
        raise ValueError(f"must be an SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...), got {value!r}")
    return text


def _opt(default: Any, parse: Callable[[Any], Any], help: str) -> Any:
    return field(default=default, metadata={"parse": parse, "help": help})


# --- sections ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SipConfig:
    listen: tuple[str, int] = _opt(("127.0.0.1", 5060), _hostport, "address the agent listens on for SIP (UDP)")
    public_address: str = _opt("", _text, "address to put in Contact and SDP when it differs from listen")
    user: str = _opt("frontdesk", _text, "the agent's SIP user (the extension when registered)")
    registrar: tuple[str, int] | None = _opt(None, _optional_hostport, "HOST:PORT of the PBX/registrar; empty: direct mode")
    password: str = _opt("", _text, "digest password for the registrar")
    domain: str = _opt("", _text, "SIP domain of the account (default: the registrar host)")
    register_expires: int = _opt(300, _int_range(30, 86_400), "registration expiry asked for (s)")
    rtp_ports: tuple[int, int] = _opt((20000, 20999), _port_range, "RTP port range LOW-HIGH")
    max_calls: int = _opt(8, _int_range(1, 500), "line limit: more calls at once get 486 Busy Here")
    media_process: bool = _opt(True, _bool, "run RTP in a process of its own (keeps the 20 ms clock under load)")


@dataclass(frozen=True)
class AnswerConfig:
    after_rings: int = _opt(2, _int_range(1, 10), "answer after this many rings (R1: normally 2, at most 3)")
    ring_cadence: tuple[int, int] = _opt((1000, 4000), _cadence, "ring cadence ON,OFF in ms (China: 1000,4000)")
    delay_ms: int | None = _opt(None, _optional_ms, "fixed ring time in ms; overrides after_rings")
    max_rings: int = _opt(3, _int_range(1, 10), "R1: calls must be answered within this many rings")


def _float_range(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number
    return parse


def _spans(value: Any) -> tuple[str, ...]:
    from callflows.hours import parse_span
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        parse_span(str(item))
    return tuple(str(item) for item in items)


def _dates(value: Any) -> tuple[str, ...]:
    from datetime import date
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        date.fromisoformat(str(item))
    return tuple(str(item) for item in items)


_MS = _int_range(0, 3_600_000)


@dataclass(frozen=True)
class FlowConfig:
    no_speech_ms: int = _opt(3000, _MS, "R6: silence after the greeting before the silent-call script starts")
    silent_pause_ms: int = _opt(2000, _MS, "R6: the pause (稍停) between the steps of the silent-call script")
    end_of_turn_ms: int = _opt(3000, _MS, "silence after the caller spoke: they have finished")
    noisy_after_ms: int = _opt(2000, _MS, "R7: noise-dominated line without clear speech for this long")
    noisy_hold_ms: int = _opt(10_000, _MS, "R7: hold on (坚持) this long for the line to clear")
    quiet_dbfs: float = _opt(-40.0, _float_range(-80.0, 0.0), "R8: speech below this active level is too quiet")
    menu_timeout_ms: int = _opt(5000, _MS, "R11: wait for 1 or 2 after the message menu")
    digit_timeout_ms: int = _opt(6000, _MS, "R11: wait between keypad digits")
    message_silence_ms: int = _opt(3000, _MS, "R11: a voice message ends on this much silence")
    message_max_ms: int = _opt(60_000, _MS, "R11: longest voice message")
    max_listen_ms: int = _opt(120_000, _int_range(5_000, 3_600_000), "longest the agent listens before the menu")
    wait_caller_hangup_ms: int = _opt(10_000, _int_range(0, 120_000), "R3: how long to wait for the caller to hang up")
    max_call_ms: int = _opt(1_800_000, _int_range(60_000, 86_400_000), "longest call; then the agent hangs up")
    rtp_timeout_ms: int = _opt(60_000, _int_range(5_000, 3_600_000),
                               "no RTP from the caller this long (not on hold): the line is dead, the call ends")


_ALL_DAY = ("00:00-24:00",)


@dataclass(frozen=True)
class HoursConfig:
    mon: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Mondays, e.g. [\"08:00-12:00\", \"13:00-18:00\"]")
    tue: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Tuesdays")
    wed: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Wednesdays")
    thu: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Thursdays")
    fri: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Fridays")
    sat: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Saturdays")
    sun: tuple[str, ...] = _opt(_ALL_DAY, _spans, "working hours on Sundays")
    holidays: tuple[str, ...] = _opt((), _dates, "closed dates (YYYY-MM-DD): calls get the after-hours script")

    def working_hours(self):
        from callflows.hours import DAYS, WorkingHours
        return WorkingHours.from_config({day: list(getattr(self, day)) for day in DAYS}, list(self.holidays))


@dataclass(frozen=True)
class DeskConfig:
    name: str = _opt("frontdesk", _text, "this agent's name in the register (several agents may share a database)")
    company: str = _opt("", _text, "company name in the prompts (default: the bundled 物业服务中心)")
    company_audio: str = _opt("", _text, "WAV of the company name, required when company is set")
    agent_no: str = _opt("1", _digits, "the agent number in the greeting (R2)")
    title: str = _opt("", _text, "form of address in prompts (default 先生/女士)")
    title_audio: str = _opt("", _text, "WAV of the title, when title is set")
    timezone: str = _opt("", _timezone, "the desk's time zone for dates and folders (default: the system's)")


@dataclass(frozen=True)
class StorageConfig:
    db: str = _opt(DEFAULT_DB, _db_url, "the register: sqlite:///FILE or postgresql+psycopg://...")
    recordings: str = _opt("var/recordings", _text, "folder for call recordings (YYYY/MM/DD below it)")
    journal: str = _opt("", _text, "write-ahead journal of register writes (default: var/register.journal)")


@dataclass(frozen=True)
class PromptsConfig:
    dir: str = _opt("", _text, "folder with the site's own recordings (<prompt>.wav replaces a prompt)")


def _rule_list(kind: str) -> Callable[[Any], tuple[str, ...]]:
    """A list (or comma-separated text) checked by db.callback_rules, kept as text."""
    def parse(value: Any) -> tuple[str, ...]:
        from db import callback_rules as rules
        items = [value] if isinstance(value, str) else list(value)
        items = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
        try:
            if kind == "quiet":
                windows = rules.CallbackRules(quiet=rules.parse_quiet(items)).quiet
                return tuple(f"{a:%H:%M}-{b:%H:%M}" for a, b in windows)
            if kind == "days":
                rules.parse_days(items)
            elif kind == "dates":
                return tuple(sorted(d.isoformat() for d in rules.parse_dates(items)))
            elif kind == "backoff":
                rules.parse_backoff(items)
        except rules.RulesError as error:
            raise ValueError(str(error)) from None
        return tuple(items)
    return parse


@dataclass(frozen=True)
class CallbacksConfig:
    quiet_hours: tuple[str, ...] = _opt(("12:00-14:00", "21:00-08:00"), _rule_list("quiet"),
                                        "R13: rest hours, desk time: no callback is due or claimed then")
    working_days: tuple[str, ...] = _opt(("mon-sun",), _rule_list("days"), "R13: days callbacks are made, e.g. [\"mon-fri\", \"sat\"]")
    holidays: tuple[str, ...] = _opt((), _rule_list("dates"), "R13: dates (YYYY-MM-DD) without callbacks")
    retry_backoff: tuple[str, ...] = _opt(("30m", "2h", "next-morning"), _rule_list("backoff"),
                                          "R13: wait after each attempt that reached nobody; the last step repeats")
    deadline_hours: int = _opt(72, _int_range(1, 720), "R13: call back within this many hours of the first call (三天之内)")
    lease_minutes: int = _opt(10, _int_range(1, 1440), "a claimed task returns to the queue when not finished within this")
    worker: str = _opt("", _text, "name of this worker in the callback record (default: user@host)")
    dial: bool = _opt(False, _bool, "the agent places due callbacks itself (frontdesk callbacks dial does too)")
    dial_target: str = _opt("", _text, "SIP URI template for a callback, e.g. \"sip:{number}@pbx.example\" "
                                       "(default: the number at the registrar)")
    dial_interval_s: int = _opt(15, _int_range(1, 3600), "how often the dialer looks for a due callback")
    dial_lines: int = _opt(1, _int_range(1, 100), "callbacks placed at the same time, at most")
    ring_timeout_s: int = _opt(30, _int_range(5, 120), "how long a callback rings before the agent gives up")

    def rules(self, tz: tzinfo):
        """The db.callback_rules.CallbackRules these settings describe, in the desk's zone."""
        from datetime import timedelta
        from db import callback_rules as rules
        return rules.CallbackRules(tz=tz, quiet=rules.parse_quiet(self.quiet_hours),
                                   working_days=rules.parse_days(self.working_days),
                                   holidays=rules.parse_dates(self.holidays),
                                   backoff=rules.parse_backoff(self.retry_backoff),
                                   deadline=timedelta(hours=self.deadline_hours),
                                   lease=timedelta(minutes=self.lease_minutes))


@dataclass(frozen=True)
class Config:
    sip: SipConfig = SipConfig()
    answer: AnswerConfig = AnswerConfig()
    flow: FlowConfig = FlowConfig()
    hours: HoursConfig = HoursConfig()
    desk: DeskConfig = DeskConfig()
    storage: StorageConfig = StorageConfig()
    prompts: PromptsConfig = PromptsConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    source: str = ""  # where it came from, for messages

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.desk.timezone) if self.desk.timezone else datetime.now().astimezone().tzinfo

    @property
    def journal_path(self) -> Path:
        if self.storage.journal:
            return Path(self.storage.journal)
        return Path("var") / "register.journal"


_SECTION_TYPES = {f.name: f.default.__class__ for f in dataclasses.fields(Config) if f.name != "source"}


def _apply(section_name: str, current: Any, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(current)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {section_name}.{close[0]}?)" if close else ""
            raise ConfigError(f"{section_name}.{key}: unknown key{hint}")
        try:
            changes[key] = known[key].metadata["parse"](value)
        except ValueError as error:
            raise ConfigError(f"{section_name}.{key}: {error}") from None
    return dataclasses.replace(current, **changes)


def from_mapping(data: dict[str, Any], base: Config | None = None, source: str = "") -> Config:
    config = base or Config()
    for section, values in data.items():
        if section not in _SECTION_TYPES:
            close = difflib.get_close_matches(section, _SECTION_TYPES, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(f"{section}: unknown section{hint}")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be a [{section}] table")
        config = dataclasses.replace(config, **{section: _apply(section, getattr(config, section), values)})
    if source:
        config = dataclasses.replace(config, source=source)
    if config.answer.after_rings > config.answer.max_rings:
        raise ConfigError(f"answer.after_rings: {config.answer.after_rings} breaks R1 (answer within "
                          f"{config.answer.max_rings} rings)")
    return config


def load(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None,
         environ: dict[str, str] | None = None) -> Config:
    """The configuration for a command: file (--config or $FRONTDESK_CONFIG), $FRONTDESK_DB, then flags."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("FRONTDESK_CONFIG") or None
    config = Config()
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config: file not found: {path}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config: {path} is not valid TOML: {error}") from None
        config = from_mapping(data, config, source=str(path))
    if environ.get("FRONTDESK_DB"):
        config = from_mapping({"storage": {"db": environ["FRONTDESK_DB"]}}, config)
    if overrides:
        config = from_mapping({section: {k: v for k, v in values.items() if v is not None}
                               for section, values in overrides.items()}, config)
    return config


def _toml_value(value: Any) -> str:
    if value in ("", None):
        return '""'
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return f'"{value[0]}:{value[1]}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def reference() -> str:
    """Every key with its default and help, as a commented TOML file (docs/configuration.md)."""
    lines = []
    for name, section_type in _SECTION_TYPES.items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section_type):
            lines.append(f"# {f.metadata['help']}\n{f.name} = {_toml_value(f.default)}")
        lines.append("")
    return "\n".join(lines)
