"""The attendant's call flow, driven by synthetic event streams with their times (R1-R4)."""
import pytest

from callflows.answer import AnswerPolicy, RingCadence
from callflows.diagram import document
from callflows.events import (Answer, CallerHangup, Cancelled, CancelTimer, Confirmed, Digit, Finish, Hangup,
                              LinkLost, Log, Play, PromptFinished, Reject, Ringing, SetTimer, Shutdown,
                              SpeechEnded, SpeechStarted, StartRecording, TimerFired)
from callflows.flow import CallFlow, IllegalTransition, State
from pathlib import Path


def run(flow, script):
    """Feed (event) items in order; collect (state after, actions) for each."""
    trace = []
    for event in script:
        actions = flow.handle(event, event.at)
        trace.append((flow.state, actions))
    return trace


def test_r1_default_answer_point_is_after_the_second_ring():
    policy = AnswerPolicy()
    assert policy.answer_delay_ms() == 8000  # ring 2 at 5-6 s, ring 3 at 10 s: answer at 8 s
    assert policy.assess(8000) == (2, True)
    assert policy.assess(14_999) == (3, True)
    assert policy.assess(15_000) == (4, False)
    assert AnswerPolicy(after_rings=3).answer_delay_ms() == 13_000
    assert AnswerPolicy(cadence=RingCadence(2000, 4000)).answer_delay_ms() == 10_000  # US cadence
    assert AnswerPolicy(delay_ms=300).answer_delay_ms() == 300


def test_ordinary_call_whole_sequence():
    flow = CallFlow()
    trace = run(flow, [
        Ringing(100.0),
        TimerFired(108.0, "answer"),
        Confirmed(108.01),
        SpeechStarted(109.0),  # the caller talks over the greeting
        PromptFinished(112.0, "greeting"),
        SpeechStarted(112.5),
        SpeechEnded(115.0),
        TimerFired(118.0, "end_of_turn"),
        PromptFinished(122.0, "closing_callback"),
        CallerHangup(123.0),
    ])
    assert [state for state, _ in trace] == [
        State.RINGING, State.ANSWERING, State.GREETING, State.GREETING, State.LISTENING, State.LISTENING,
        State.LISTENING, State.CLOSING, State.WAIT_CALLER_HANGUP, State.ENDED]
    assert trace[0][1] == [SetTimer("answer", 108.0)]
    assert trace[1][1] == [Answer(), StartRecording()]
    assert Play("greeting") in trace[2][1]
    assert SetTimer("end_of_turn", 115.0) in trace[4][1]  # heard speech during the greeting
    assert trace[6][1] == [SetTimer("end_of_turn", 118.0)]
    assert Play("closing_callback") in trace[7][1]
    assert SetTimer("caller_hangup", 132.0) in trace[8][1]  # R3: wait up to 10 s
    assert trace[9][1][-1] == Finish("handled", "caller", "BYE")


def test_silent_caller_gets_the_closing_after_3s():
    flow = CallFlow()
    trace = run(flow, [Ringing(0.0), TimerFired(8.0, "answer"), Confirmed(8.0), PromptFinished(12.0, "greeting")])
    assert SetTimer("no_speech", 15.0) in trace[-1][1]
    assert Play("closing_callback") in flow.handle(TimerFired(15.0, "no_speech"), 15.0)


def test_r3_agent_hangs_up_after_10s_if_caller_does_not():
    flow = CallFlow()
    run(flow, [Ringing(0.0), TimerFired(8.0, "answer"), Confirmed(8.0), PromptFinished(12.0),
               TimerFired(15.0, "no_speech"), PromptFinished(20.0)])
    actions = flow.handle(TimerFired(30.0, "caller_hangup"), 30.0)
    assert actions[0] == Hangup() and actions[1].outcome == "handled" and actions[1].hung_up_first == "agent"


def test_cancel_while_ringing_is_missed_and_never_answered():
    flow = CallFlow()
    run(flow, [Ringing(0.0)])
    assert flow.handle(Cancelled(2.0), 2.0) == [CancelTimer("answer"), Finish("missed", "caller", "CANCEL")]
    assert flow.handle(TimerFired(8.0, "answer"), 8.0) == []  # a late timer cannot answer it
    assert flow.state == State.MISSED


def test_hangup_during_greeting_is_abandoned():
    flow = CallFlow()
    run(flow, [Ringing(0.0), TimerFired(8.0, "answer"), Confirmed(8.0)])
    assert flow.handle(CallerHangup(9.0), 9.0)[-1] == Finish("abandoned", "caller", "BYE")


def test_shutdown_refuses_ringing_and_hangs_up_answered():
    ringing = CallFlow()
    run(ringing, [Ringing(0.0)])
    assert Reject(480) in ringing.handle(Shutdown(1.0), 1.0)
    talking = CallFlow()
    run(talking, [Ringing(0.0), TimerFired(8.0, "answer"), Confirmed(8.0)])
    actions = talking.handle(Shutdown(9.0), 9.0)
    assert Hangup() in actions and actions[-1].outcome == "interrupted"


def test_no_ack_ends_the_call():
    flow = CallFlow()
    run(flow, [Ringing(0.0), TimerFired(8.0, "answer")])
    assert flow.handle(LinkLost(40.0, "no ACK"), 40.0)[-1] == Finish("abandoned", "system", "no ACK")


def test_illegal_move_raises_one_exception():
    flow = CallFlow()
    with pytest.raises(IllegalTransition):
        flow.handle(CallerHangup(0.0), 0.0)  # nothing rings yet
    flow = CallFlow()
    flow.handle(Ringing(0.0), 0.0)
    with pytest.raises(IllegalTransition):
        flow.handle(TimerFired(1.0, "caller_hangup"), 1.0)
    assert flow.handle(Digit(1.0, "5"), 1.0) == []  # ignored, not illegal


def test_state_diagram_doc_is_generated_from_the_table():
    doc = Path(__file__).resolve().parents[2] / "docs" / "call-states.md"
    assert doc.read_text(encoding="utf-8") == document(), "run: python -m callflows.diagram > docs/call-states.md"
