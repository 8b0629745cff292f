"""RTP and RFC 4733 wire formats, as round trips on captured bytes."""
import pytest

from softphone.rtp import RtpError, RtpPacket, TelephoneEvent, is_rtcp, seq_delta

# A PCMU packet as SIPp's play_pcap_audio sends it (seq 4660, ts 160, ssrc 0x12345678, 4 payload bytes).
CAPTURED = bytes.fromhex("80001234000000a012345678fffefdfc")


def test_parse_captured_packet():
    packet = RtpPacket.parse(CAPTURED)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (0, 0x1234, 160, 0x12345678)
    assert packet.payload == bytes.fromhex("fffefdfc") and not packet.marker
    assert packet.serialize() == CAPTURED


def test_sequence_wrap_is_well_formed():
    """pyVoIP 1.6.8 sends a packet without its sequence field at the wrap (M13)."""
    packet = RtpPacket(8, 65536, 2**32 + 5, 2**32 - 1, b"\xd5" * 160)
    raw = packet.serialize()
    assert len(raw) == 12 + 160
    back = RtpPacket.parse(raw)
    assert (back.sequence, back.timestamp, back.ssrc) == (0, 5, 2**32 - 1)


def test_csrc_extension_and_padding_are_skipped():
    header = bytes([0x80 | 0x20 | 0x10 | 0x01, 0x80 | 8]) + (7).to_bytes(2, "big") + (1).to_bytes(4, "big") + (9).to_bytes(4, "big")
    csrc = (42).to_bytes(4, "big")
    extension = bytes.fromhex("bede0001") + b"\x10\xaa\x00\x00"
    raw = header + csrc + extension + b"\x01\x02\x03" + b"\x00\x02"  # 2 bytes of padding
    packet = RtpPacket.parse(raw)
    assert packet.payload == b"\x01\x02\x03" and packet.marker and packet.payload_type == 8


@pytest.mark.parametrize("raw", [b"", b"\x80\x00", bytes(12), bytes.fromhex("9000000100000001000000010000")])
def test_bad_packets_raise_one_error_type(raw):
    with pytest.raises(RtpError):
        RtpPacket.parse(raw)


def test_telephone_event_round_trip():
    # digit 5, end bit, volume 10, duration 800 samples
    raw = bytes.fromhex("058a0320")
    event = TelephoneEvent.parse(raw)
    assert (event.digit, event.end, event.volume, event.duration) == ("5", True, 10, 800)
    assert event.serialize() == raw
    assert TelephoneEvent(11, False, 0, 0).digit == "#"


def test_rtcp_and_sequence_arithmetic():
    assert is_rtcp(bytes([0x81, 200, 0, 6])) and not is_rtcp(CAPTURED)
    assert seq_delta(2, 65534) == 4 and seq_delta(65534, 2) == -4 and seq_delta(7, 7) == 0
