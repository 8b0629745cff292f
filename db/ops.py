"""Register operations: small frozen values the agent hands to the RegisterWriter (R16-R18).

Every op names its call by `uid` (made by the agent with `new_uid()`), so the agent never waits
for the database to assign an id. Every op is idempotent, so replaying the journal after a
crash never duplicates anything:
  OpenCall   insert the call row, or update it if the uid exists;
  UpdateCall update fields of an existing call (an unknown uid is a bad op);
  AddEvent   insert event `seq` of the call, or do nothing if (call, seq) exists;
  CloseCall  the final update (status "ended" unless given), plus the writer's on_close hooks.
`fields` maps column names of db.models.Call (CALL_FIELDS) to values; datetimes must be
timezone-aware. The dicts are copied when an op is made: do not mutate them afterwards anyway.

The journal stores ops as JSON (`op_to_json` / `op_from_json`); datetimes travel as
{"$dt": ISO 8601 with offset and microseconds}, which round-trips exactly.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_DT = "$dt"


def new_uid() -> str:
    """A fresh call uid (uuid4 hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class OpenCall:
    uid: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", dict(self.fields))


@dataclass(frozen=True, slots=True)
class UpdateCall:
    uid: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", dict(self.fields))


@dataclass(frozen=True, slots=True)
class CloseCall:
    uid: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", dict(self.fields))


@dataclass(frozen=True, slots=True)
class AddEvent:
    uid: str
    seq: int
    at: datetime
    t_ms: int
    kind: str
    data: Any = None


Op = OpenCall | UpdateCall | CloseCall | AddEvent

_NAMES: dict[type, str] = {OpenCall: "open", UpdateCall: "update", CloseCall: "close",
                           AddEvent: "event"}
_TYPES = {name: cls for cls, name in _NAMES.items()}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DT: value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _DT in value:
            return datetime.fromisoformat(value[_DT])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def op_to_json(op: Op) -> str:
    """One op as a JSON text (one line). Raises TypeError/ValueError for what JSON cannot hold."""
    try:
        name = _NAMES[type(op)]
    except KeyError:
        raise TypeError(f"not a register op: {op!r}") from None
    body: dict[str, Any] = {"op": name}
    for key in op.__slots__:  # type: ignore[union-attr]
        body[key] = _encode(getattr(op, key))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def op_from_json(obj: dict[str, Any]) -> Op:
    """The op that `json.loads(op_to_json(op))` describes. Raises ValueError on anything else."""
    try:
        cls = _TYPES[obj["op"]]
        kwargs = {key: _decode(obj[key]) for key in cls.__slots__}
        return cls(**kwargs)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a register op: {obj!r:.200}") from exc
