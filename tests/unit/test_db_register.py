"""Reading the register: the CLI's service layer and the agent's start-up clean-up (R16, R17)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from db import schema
from db.engine import make_engine, session_factory
from db.models import Call, CallEvent
from db.ops import AddEvent, OpenCall, op_from_json, op_to_json
from db.register import (CALL_KEYS, EVENT_KEYS, call_events, call_to_dict, event_to_dict,
                         get_call, list_calls, mark_interrupted, unfinished_calls)

BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 25, 13, 3, 5, 123456, tzinfo=timezone.utc)  # 21:03:05.123 in Beijing


@pytest.fixture
def Session(tmp_path):
    url = f"sqlite:///{tmp_path}/register.db"
    schema.upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def a_call(n: int, **fields) -> Call:
    values = dict(uid=f"uid{n:02d}", call_id=f"sip-{n}@pbx", agent="desk1", caller="1001",
                  called="8000", started_at=T0 + timedelta(minutes=n), status="ended")
    values.update(fields)
    return Call(**values)


def test_call_to_dict_has_the_stable_keys_and_local_times(Session):
    with Session.begin() as session:
        call = a_call(0, ringing_at=T0 + timedelta(milliseconds=40), ring_ms=5012, rings=2,
                      r1_met=True, answered_at=T0 + timedelta(seconds=5, milliseconds=52),
                      ended_at=None, scripts=["silent"], category="报修", outcome="handled")
        session.add(call)
    d = call_to_dict(call, BEIJING)
    assert tuple(d) == CALL_KEYS == (
        "id", "uid", "call_id", "agent", "caller", "caller_name", "called", "started_at",
        "ringing_at", "ring_ms", "ring_ms_from_invite", "rings", "r1_met", "answered_at",
        "ended_at", "talk_ms", "status", "outcome", "hung_up_first", "end_reason", "sip_code",
        "codec", "category", "notes", "scripts", "dtmf", "recording", "recording_sha256",
        "recording_ms", "callback_task_id", "callback_number", "resolved_task_id", "direction")
    assert d["started_at"] == "2026-11-25T21:03:05.123+08:00"
    assert d["ringing_at"] == "2026-11-25T21:03:05.163+08:00"
    assert d["answered_at"] == "2026-11-25T21:03:10.175+08:00"
    assert d["ended_at"] is None and d["caller_name"] is None
    assert d["scripts"] == ["silent"] and d["category"] == "报修" and d["r1_met"] is True
    json.dumps(d, ensure_ascii=False)  # plain data
    assert call_to_dict(call, timezone.utc)["started_at"] == "2026-11-25T13:03:05.123+00:00"


def test_event_to_dict(Session):
    with Session.begin() as session:
        call = a_call(0)
        session.add(call)
        session.flush()
        session.add(CallEvent(call_pk=call.id, seq=1, at=T0, t_ms=0, kind="ringing", data=None))
        session.add(CallEvent(call_pk=call.id, seq=3, at=T0 + timedelta(seconds=5), t_ms=5001,
                              kind="prompt", data={"prompt": "greeting"}))
        session.add(CallEvent(call_pk=call.id, seq=2, at=T0 + timedelta(seconds=5), t_ms=5000,
                              kind="answered", data=None))
    with Session() as session:
        events = [event_to_dict(e, BEIJING) for e in call_events(session, get_call(session, 1))]
    assert [tuple(e) for e in events] == [EVENT_KEYS] * 3
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert events[2] == {"seq": 3, "at": "2026-11-25T21:03:10.123+08:00", "t_ms": 5001,
                         "kind": "prompt", "data": {"prompt": "greeting"}}


def test_list_calls_newest_first_with_filters(Session):
    with Session.begin() as session:
        session.add_all([a_call(0, outcome="handled"), a_call(1, outcome="missed"),
                         a_call(2, outcome="missed", caller="1002"), a_call(3, outcome="silent")])
    with Session() as session:
        def uids(**kw):
            return [c.uid for c in list_calls(session, **kw)]
        assert uids() == ["uid03", "uid02", "uid01", "uid00"]
        assert uids(outcome="missed") == ["uid02", "uid01"]
        assert uids(outcome=["missed", "silent"], limit=2) == ["uid03", "uid02"]
        assert uids(caller="1001", outcome="missed") == ["uid01"]
        # since is inclusive, until exclusive; times in any zone
        assert uids(since=(T0 + timedelta(minutes=1)).astimezone(BEIJING),
                    until=T0 + timedelta(minutes=3)) == ["uid02", "uid01"]


def test_get_call_by_id_uid_or_sip_call_id(Session):
    with Session.begin() as session:
        session.add_all([a_call(1), a_call(2, call_id="shared@pbx"),
                         a_call(3, call_id="shared@pbx"), a_call(4, call_id="7")])
    with Session() as session:
        assert get_call(session, 2).uid == "uid02"
        assert get_call(session, "2").uid == "uid02"
        assert get_call(session, "uid03").id == 3
        assert get_call(session, "sip-1@pbx").id == 1
        assert get_call(session, "shared@pbx").uid == "uid03"  # the newest with that Call-ID
        assert get_call(session, "7").uid == "uid04"  # no id 7: the Call-ID
        assert get_call(session, "nothing") is None and get_call(session, 99) is None


def test_unfinished_calls_are_closed_as_interrupted(Session):
    answered = T0 + timedelta(seconds=5)
    with Session.begin() as session:
        session.add_all([a_call(1, status="answered", answered_at=answered),
                         a_call(2, status="ringing"), a_call(3),
                         a_call(4, status="ringing", agent="desk2")])
    restart = T0 + timedelta(minutes=10)
    with Session.begin() as session:
        left = unfinished_calls(session, "desk1")
        assert [c.uid for c in left] == ["uid01", "uid02"]
        for call in left:
            mark_interrupted(session, call, restart)
    with Session() as session:
        one, two = get_call(session, "uid01"), get_call(session, "uid02")
        assert (one.status, one.outcome, one.hung_up_first, one.end_reason) == (
            "ended", "interrupted", "system", "crash")
        assert one.ended_at == restart
        assert one.talk_ms == round((restart - answered).total_seconds() * 1000)
        assert two.talk_ms is None and two.outcome == "interrupted"
        assert unfinished_calls(session, "desk1") == []
        assert [c.uid for c in unfinished_calls(session, "desk2")] == ["uid04"]


def test_ops_travel_through_json_losslessly():
    op = OpenCall("u", {"started_at": T0.astimezone(BEIJING), "caller": "1001",
                        "scripts": ["silent", "noisy"], "notes": "报修：漏水"})
    back = op_from_json(json.loads(op_to_json(op)))
    assert back == op
    assert back.fields["started_at"].utcoffset() == timedelta(hours=8)
    assert back.fields["started_at"].microsecond == 123456
    event = AddEvent("u", 3, T0, 5001, "dtmf", {"digits": "13800138000", "at": [T0]})
    assert op_from_json(json.loads(op_to_json(event))) == event
    with pytest.raises(TypeError):
        op_to_json(OpenCall("u", {"notes": {1, 2}}))
    with pytest.raises(ValueError):
        op_from_json({"op": "teleport", "uid": "u"})
