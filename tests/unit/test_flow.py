"""The house scripts, driven by synthetic event streams; whole sequences with their times (R1-R11)."""
from pathlib import Path

import pytest

from callflows.answer import AnswerPolicy, RingCadence
from callflows.diagram import document
from callflows.driver import FlowDriver
from callflows.events import (CallerHangup, Cancelled, Confirmed, Digit, Finish, Hold, LineChanged, LinkLost,
                              Play, PromptFinished, Reject, Ringing, Shutdown, SpeechEnded, SpeechStarted,
                              TimerFired)
from callflows.flow import CallFlow, IllegalTransition, State

PROMPT_MS = {"greeting": 6000, "silent_hello": 800, "silent_hello_company": 2000, "silent_goodbye": 5500,
             "noisy_louder": 4700, "noisy_goodbye": 6700, "quiet_louder": 2000, "message_menu": 5000,
             "closing_callback": 6000, "enter_number": 3400, "confirm_intro": 2600, "confirm_menu": 2400,
             "message_saved": 6400, "record_message": 2600, "beep": 400, "after_hours": 3000}


def prompt_ms(play):
    return PROMPT_MS[play.prompt] + 300 * len(play.digits)


def answered(t=0.0):
    """Ring at t, answer at t+8 (R1 default), ACK 10 ms later."""
    return [Ringing(t), Confirmed(t + 8.01)]


def drive(events, until=None, after_hours=False, **settings):
    from callflows.flow import FlowSettings
    flow = CallFlow(AnswerPolicy(), FlowSettings(**settings), after_hours=after_hours)
    driver = FlowDriver(flow, prompt_ms)
    driver.run(events, until)
    return flow, driver


def test_r1_default_answer_point_is_after_the_second_ring():
    policy = AnswerPolicy()
    assert policy.answer_delay_ms() == 8000  # ring 2 at 5-6 s, ring 3 at 10 s: answer at 8 s
    assert policy.assess(8000) == (2, True)
    assert policy.assess(14_999) == (3, True)
    assert policy.assess(15_000) == (4, False)
    assert AnswerPolicy(after_rings=3).answer_delay_ms() == 13_000
    assert AnswerPolicy(cadence=RingCadence(2000, 4000)).answer_delay_ms() == 10_000  # US cadence
    assert AnswerPolicy(delay_ms=300).answer_delay_ms() == 300


def test_caller_states_business_then_menu_then_closing_r4_r3():
    flow, driver = drive(answered() + [SpeechStarted(15.0), SpeechEnded(19.0, -22.0), CallerHangup(45.0)])
    assert driver.decisions() == [
        (8.0, "answer"),
        (8.01, "play greeting"),
        (22.0, "play message_menu"),  # R11: 3 s after the caller stopped
        (32.0, "play closing_callback"),  # 5 s without a key after the menu (27 + 5)
        (45.0, "finish message (caller hung up first)"),  # R3: the caller hung up first
    ]
    waiting = [s for s in driver.steps if s.state == State.WAIT_CALLER_HANGUP]
    assert waiting and waiting[0].at == 38.0


def test_r3_agent_hangs_up_10s_after_the_closing():
    flow, driver = drive(answered() + [SpeechStarted(15.0), SpeechEnded(16.0, -20.0)])
    # speech ends 16 -> menu 19 (+5 s) -> no key by 29 -> closing (6 s) -> R3 wait 10 s -> 45
    assert driver.decisions()[-2:] == [(45.0, "hangup"), (45.0, "finish message (agent hung up first)")]


def test_r6_silent_call_whole_script():
    flow, driver = drive(answered())
    assert driver.decisions() == [
        (8.0, "answer"),
        (8.01, "play greeting"),
        (17.01, "play silent_hello"),  # greeting ends at 14.01, + 3 s without speech
        (19.81, "play silent_hello_company"),  # + 0.8 s prompt + 2 s pause (稍停)
        (23.81, "play silent_goodbye"),
        (29.31, "hangup"),
        (29.31, "finish silent (agent hung up first)"),
    ]
    assert flow.scripts == ["greeting", "silent"]


def test_r6_speech_ends_the_silent_script_and_the_call_proceeds():
    flow, driver = drive(answered() + [SpeechStarted(20.5), SpeechEnded(23.0, -25.0), CallerHangup(60.0)])
    steps = [(s.at, s.state) for s in driver.steps if s.event.kind == "SpeechStarted"]
    assert steps == [(20.5, State.LISTENING)]
    assert "play silent_goodbye" not in [d for _, d in driver.decisions()]
    assert flow.outcome == "message"


def test_r7_noisy_line_whole_script():
    flow, driver = drive(answered() + [LineChanged(9.0, "noisy")])
    assert driver.decisions() == [
        (8.0, "answer"),
        (8.01, "play greeting"),
        (16.01, "play noisy_louder"),  # greeting ends 14.01, noisy with no clear speech 2 s
        (30.71, "play noisy_goodbye"),  # + 4.7 s prompt + 10 s hold on (坚持10秒)
        (37.41, "hangup"),
        (37.41, "finish noisy (agent hung up first)"),
    ]


def test_r7_clear_speech_during_hold_on_ends_the_script():
    flow, driver = drive(answered() + [LineChanged(9.0, "noisy"), SpeechStarted(25.0), SpeechEnded(28.0, -20.0),
                                       CallerHangup(40.0)])
    assert "play noisy_goodbye" not in [d for _, d in driver.decisions()]
    assert flow.outcome == "message" and "noisy" in flow.scripts


def test_noise_then_silence_falls_back_to_the_silent_script():
    flow, driver = drive(answered() + [LineChanged(9.0, "noisy"), LineChanged(15.0, "silent")])
    assert (18.0, "play silent_hello") in driver.decisions()


def test_r8_quiet_caller_is_asked_once_then_the_call_carries_on():
    flow, driver = drive(answered() + [SpeechStarted(15.0), SpeechEnded(17.0, -44.0), SpeechStarted(21.0),
                                       SpeechEnded(23.0, -43.0), CallerHangup(40.0)])
    plays = [d for _, d in driver.decisions() if d.startswith("play")]
    assert plays.count("play quiet_louder") == 1
    assert (17.0, "play quiet_louder") in driver.decisions()
    assert flow.outcome == "message"


def test_r11_callback_number_read_back_and_confirmed():
    flow, driver = drive(answered() + [
        SpeechStarted(15.0), SpeechEnded(16.0, -20.0),
        Digit(20.0, "1"),  # during the menu: barge in
        *[Digit(25.0 + i * 0.3, d) for i, d in enumerate("13800")], Digit(27.0, "#"),
        Digit(35.0, "1"), CallerHangup(45.0)])
    decisions = driver.decisions()
    assert (20.0, "play enter_number") in decisions
    assert (27.0, "play confirm_intro 13800") in decisions and (27.0, "play confirm_menu") in decisions
    assert (35.0, "record callback_number=13800") in decisions
    assert (35.0, "play message_saved") in decisions
    assert decisions[-1] == (45.0, "finish message (caller hung up first)")
    stopped = [s for s in driver.steps if isinstance(s.event, PromptFinished) and not s.event.completed]
    assert [s.event.prompt for s in stopped] == ["message_menu"]


def test_r11_two_enters_the_number_again():
    flow, driver = drive(answered() + [
        Digit(15.0, "1"), Digit(19.0, "5"), Digit(19.5, "#"), Digit(26.0, "2"),
        Digit(31.0, "6"), Digit(31.5, "#"), Digit(38.0, "1")])
    decisions = driver.decisions()
    assert (19.5, "play confirm_intro 5") in decisions and (31.5, "play confirm_intro 6") in decisions
    assert (38.0, "record callback_number=6") in decisions


def test_r11_voice_message_ends_on_silence():
    flow, driver = drive(answered() + [Digit(16.0, "2"), SpeechStarted(20.0), SpeechEnded(30.0, -22.0)])
    decisions = driver.decisions()
    assert (16.0, "play record_message") in decisions and (18.6, "play beep") in decisions
    assert (33.0, "play message_saved") in decisions  # 3 s of silence after the message
    assert decisions[-1][1] == "finish message (agent hung up first)"


def test_after_hours_offers_the_message_option():
    flow, driver = drive(answered(), after_hours=True)
    decisions = driver.decisions()
    assert decisions[1] == (8.01, "play after_hours") and decisions[2] == (11.01, "play message_menu")
    assert decisions[-1][1] == "finish after_hours (agent hung up first)"


def test_hold_pauses_the_silence_timers():
    flow, driver = drive(answered() + [Hold(14.5, True), Hold(30.0, False), CallerHangup(31.0)])
    assert "play silent_hello" not in [d for _, d in driver.decisions()]


def test_cancel_while_ringing_is_missed_and_never_answered():
    flow, driver = drive([Ringing(0.0), Cancelled(2.0), TimerFired(8.0, "answer")])
    assert driver.decisions() == [(2.0, "finish missed (caller hung up first)")]
    assert flow.state == State.MISSED


def test_hangup_during_greeting_is_abandoned():
    flow, driver = drive(answered() + [CallerHangup(9.0)])
    assert flow.outcome == "abandoned"


def test_hangup_after_greeting_without_a_word_is_silent():
    flow, driver = drive(answered() + [CallerHangup(15.0)])
    assert flow.outcome == "silent"


def test_shutdown_refuses_ringing_and_hangs_up_answered():
    ringing = CallFlow()
    ringing.handle(Ringing(0.0), 0.0)
    assert Reject(480) in ringing.handle(Shutdown(1.0), 1.0)
    flow, driver = drive(answered() + [Shutdown(9.0)])
    assert driver.decisions()[-2:] == [(9.0, "hangup"), (9.0, "finish interrupted (agent hung up first)")]


def test_no_ack_ends_the_call():
    flow, driver = drive([Ringing(0.0), LinkLost(40.0, "no ACK")])
    assert flow.outcome == "abandoned"


def test_stale_prompt_completion_is_ignored():
    flow = CallFlow()
    for event in [Ringing(0.0), TimerFired(8.0, "answer"), Confirmed(8.0)]:
        flow.handle(event, event.at)
    assert flow.handle(PromptFinished(9.0, "closing", True), 9.0) == []
    assert flow.state == State.GREETING


def test_illegal_move_raises_one_exception():
    with pytest.raises(IllegalTransition):
        CallFlow().handle(CallerHangup(0.0), 0.0)  # nothing rings yet
    flow = CallFlow()
    flow.handle(Ringing(0.0), 0.0)
    assert flow.handle(Digit(1.0, "5"), 1.0) == []  # ignored, not illegal


def test_every_handler_exists_and_alternatives_are_states():
    from callflows.flow import ALTERNATIVES, TRANSITIONS
    for (state, kind), (target, handler) in TRANSITIONS.items():
        assert hasattr(CallFlow, "_" + handler), handler
    assert all(isinstance(s, State) for alt in ALTERNATIVES.values() for s in alt)


def test_state_diagram_doc_is_generated_from_the_table():
    doc = Path(__file__).resolve().parents[2] / "docs" / "call-states.md"
    assert doc.read_text(encoding="utf-8") == document(), "run: python -m callflows.diagram > docs/call-states.md"


def test_no_call_holds_the_line_forever():
    """A caller who went on hold and vanished: the agent hangs up after max_call_ms."""
    flow, driver = drive(answered() + [Hold(14.5, True)], until=100.0, max_call_ms=60_000)
    assert driver.decisions()[-2:] == [(68.0, "hangup"), (68.0, "finish silent (agent hung up first)")]
