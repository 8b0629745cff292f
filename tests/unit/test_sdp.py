"""SDP offer/answer (RFC 3264): codec choice, 488 cases, hold directions (field test M11, M15)."""
from softphone import sdp
from softphone.sdp import MediaOffer


def offer(formats, rtpmap=None, direction="sendrecv", address="127.0.0.9", port=6000):
    return MediaOffer(address, port, tuple(formats), rtpmap or {}, direction)


def test_first_g711_in_offerer_order_wins():
    assert sdp.negotiate(offer([8, 0, 101], {101: "telephone-event/8000"})).codec == "PCMA"
    chosen = sdp.negotiate(offer([0, 8, 101], {101: "telephone-event/8000"}))
    assert (chosen.codec, chosen.payload_type, chosen.dtmf_payload_type) == ("PCMU", 0, 101)


def test_dynamic_pt_mapped_to_pcmu_is_accepted():
    assert sdp.negotiate(offer([96], {96: "PCMU/8000"})).payload_type == 96


def test_no_common_codec_gives_no_answer():
    """M11: G.729/Opus only must become a 488, not an empty m= line."""
    assert sdp.negotiate(offer([18, 96], {18: "G729/8000", 96: "opus/48000/2"})) is None
    assert sdp.negotiate(offer([0], {0: "PCMU/16000"})) is None


def test_hold_is_answered_per_rfc3264():
    """M15: hold (sendonly) is answered recvonly; pyVoIP answers sendrecv."""
    assert sdp.negotiate(offer([0], direction="sendonly")).direction == "recvonly"
    assert sdp.negotiate(offer([0], direction="inactive")).direction == "inactive"
    assert sdp.negotiate(offer([0], address="0.0.0.0")).direction == "recvonly"
    assert offer([0], direction="sendonly").on_hold and not offer([0]).on_hold


def test_rendered_answer():
    chosen = sdp.negotiate(offer([8, 101], {101: "telephone-event/8000"}))
    text = sdp.answer(chosen, address="127.0.0.2", port=20002, session_id=7, version=2).decode()
    assert "m=audio 20002 RTP/AVP 8 101\r\n" in text
    assert "a=rtpmap:8 PCMA/8000\r\n" in text and "a=fmtp:101 0-15\r\n" in text
    assert text.count("c=IN IP4 127.0.0.2") == 1 and text.endswith("a=sendrecv\r\n")
