"""LineSegmenter on plain verdict sequences, no audio (STYLE.md item 2; R6 silent, R7 noisy, R8 quiet).

Time comes only from frame counts: 20 ms per pushed verdict unless frame_ms says otherwise.
"""
import pytest

from callflows.detect import FrameKind, FrameVerdict, LineSegmenter, LineState

S, N, Q = FrameKind.SPEECH, FrameKind.NOISE, FrameKind.SILENCE


def feed(seg, kinds, level=-30.0):
    events = []
    for k in kinds:
        events += seg.push(k, level)
    return events


def of_kind(events, kind):
    return [e for e in events if e.kind == kind]


def test_speech_start_after_min_speech_and_end_after_hangover():
    seg = LineSegmenter(min_speech_ms=80, hangover_ms=400)
    events = feed(seg, [Q] * 10 + [S] * 10 + [Q] * 30)
    (start,) = of_kind(events, "speech_start")
    (end,) = of_kind(events, "speech_end")
    assert start.t_ms == (10 + 4) * 20  # declared after 4 frames = 80 ms of speech
    assert start.data["onset_ms"] == 200  # backdated to the first speech frame
    assert end.data["end_ms"] == 400  # end of the last speech frame
    assert end.t_ms == 400 + 400  # after 400 ms of hangover
    assert end.data["duration_ms"] == 200
    assert seg.t_ms == 50 * 20


def test_booleans_work_as_verdicts():
    seg = LineSegmenter()
    events = feed(seg, [False] * 5 + [True] * 5 + [False] * 25)
    assert [e.kind for e in events if e.kind != "line"] == ["speech_start", "speech_end"]


def test_a_blip_shorter_than_min_speech_is_not_speech():
    seg = LineSegmenter(min_speech_ms=80)
    events = feed(seg, [Q] * 5 + [S] * 3 + [Q] * 5 + [S] * 3 + [Q] * 30)
    assert events == []
    assert seg.state is LineState.SILENT
    assert seg.ms_since_speech is None


def test_gap_shorter_than_hangover_keeps_one_talkspurt():
    seg = LineSegmenter(hangover_ms=300)
    events = feed(seg, [S] * 10 + [Q] * 14 + [S] * 10 + [Q] * 16 + [S] * 5 + [Q] * 20)
    # the 280 ms gap is bridged, the 320 ms gap is not
    assert len(of_kind(events, "speech_start")) == 2
    ends = of_kind(events, "speech_end")
    assert [e.data["end_ms"] for e in ends] == [(10 + 14 + 10) * 20, (34 + 16 + 5) * 20]


def test_frame_length_sets_the_clock():
    seg = LineSegmenter(frame_ms=10, min_speech_ms=80, hangover_ms=400)
    events = feed(seg, [S] * 8 + [Q] * 40)
    assert of_kind(events, "speech_start")[0].t_ms == 80
    assert of_kind(events, "speech_end")[0].t_ms == 80 + 400


def test_running_figures_for_the_flows():
    seg = LineSegmenter(hangover_ms=400)
    assert seg.ms_since_speech is None and seg.active_level_dbfs is None
    feed(seg, [S] * 10, level=-30.0)
    assert seg.in_speech and seg.ms_since_speech == 0
    assert seg.active_level_dbfs == pytest.approx(-30.0)
    feed(seg, [Q] * 7)
    assert seg.nonspeech_ms == 140 and seg.ms_since_speech == 140
    assert seg.in_speech  # still inside the hangover
    feed(seg, [Q] * 50)
    assert not seg.in_speech
    assert seg.nonspeech_ms == 57 * 20 and seg.ms_since_speech == 57 * 20
    assert seg.active_level_dbfs == pytest.approx(-30.0)  # of the last talkspurt
    assert seg.speech_ms == 200


def test_active_level_is_the_level_of_speech_frames():
    seg = LineSegmenter()
    for level in (-20.0, -26.0) * 10:
        seg.push(S, level)
    # power mean of -20 and -26 dBFS, not their dB mean
    assert seg.active_level_dbfs == pytest.approx(-22.03, abs=0.05)
    seg.push(S, -70.0)  # far below the talkspurt's level: not active speech
    assert seg.active_level_dbfs == pytest.approx(-22.03, abs=0.05)


@pytest.mark.parametrize("level,threshold,expected", [
    (-45.0, -40.0, LineState.QUIET),
    (-35.0, -40.0, LineState.SPEECH),
    (-45.0, -50.0, LineState.SPEECH),
])
def test_quiet_speech_state_r8(level, threshold, expected):
    seg = LineSegmenter(quiet_threshold_dbfs=threshold)
    events = feed(seg, [S] * 10, level=level)
    lines = of_kind(events, "line")
    assert [e.data["state"] for e in lines] == [expected.value]
    assert lines[0].data["previous"] == "silent"
    assert lines[0].t_ms == 80  # with the speech start
    assert seg.state is expected


def test_quiet_state_has_hysteresis():
    seg = LineSegmenter(quiet_threshold_dbfs=-40.0)
    feed(seg, [S] * 10, level=-41.0)
    assert seg.state is LineState.QUIET
    feed(seg, [S] * 10, level=-38.0)  # talkspurt now -39.2 dBFS: above -40, inside the 1 dB band
    assert seg.state is LineState.QUIET
    feed(seg, [S] * 60, level=-30.0)
    assert seg.state is LineState.SPEECH


def test_noisy_after_two_seconds_of_mostly_noise_r7():
    seg = LineSegmenter(noisy_window_ms=2000, noisy_fraction=0.8, clear_fraction=0.5)
    events = feed(seg, [N] * 99)
    assert seg.state is LineState.SILENT  # window not full yet
    events = feed(seg, [N])
    assert [(e.t_ms, e.data["state"]) for e in events] == [(2000, "noisy")]
    # The line clears when noise falls below half of the window.
    events = feed(seg, [Q] * 50)
    assert seg.state is LineState.NOISY
    events = feed(seg, [Q])
    assert [(e.t_ms, e.data["state"]) for e in events] == [(3020, "silent")]
    assert seg.time_in(LineState.NOISY) == 1020


def test_noise_with_some_silence_is_still_noisy_but_speech_wins():
    seg = LineSegmenter()
    feed(seg, ([N] * 9 + [Q]) * 20)  # 90 % noise
    assert seg.state is LineState.NOISY
    events = feed(seg, [S] * 5)
    assert seg.state is LineState.SPEECH
    assert [e.data["state"] for e in of_kind(events, "line")] == ["speech"]
    feed(seg, [N] * 25)  # talkspurt ends after the hangover; the window still holds noise
    assert seg.state is LineState.NOISY


def test_missing_frames_are_silence_counted_apart():
    seg = LineSegmenter()
    missing = FrameVerdict(FrameKind.SILENCE, -100.0, -100.0, missing=True)
    present = FrameVerdict(FrameKind.SILENCE, -80.0, -80.0)
    for _ in range(10):
        seg.push(missing)
    for _ in range(5):
        seg.push(present)
    assert seg.missing_ms == 200
    assert seg.nonspeech_ms == 300
    assert seg.state is LineState.SILENT


@pytest.mark.parametrize("kinds,level,expected", [
    ([Q] * 200, -80.0, LineState.SILENT),
    ([N] * 200, -30.0, LineState.NOISY),
    ([Q] * 50 + [S] * 50 + [Q] * 50, -30.0, LineState.SPEECH),
    ([Q] * 50 + [S] * 50 + [Q] * 50, -45.0, LineState.QUIET),
    ([N] * 150 + [S] * 10 + [N] * 150, -30.0, LineState.NOISY),  # 200 ms of speech: too little
])
def test_overall_state_of_a_recording(kinds, level, expected):
    seg = LineSegmenter()
    feed(seg, kinds, level=level)
    assert seg.overall_state() is expected


def test_bad_frame_length_is_refused():
    with pytest.raises(ValueError):
        LineSegmenter(frame_ms=0)
