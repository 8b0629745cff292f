"""The tolerant SIP parser and the response builder (field test 4.3, cases #3-#8, #23-#30)."""
import pytest

from softphone import sipwire
from softphone.sipwire import NameAddr, SipParseError, SipUri, Via

INVITE = (
    "INVITE sip:frontdesk@127.0.0.2:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy;rport\r\n"
    "Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcaller;received=127.0.0.9\r\n"
    "Record-Route: <sip:127.0.0.1:5060;lr;ftag=abc>\r\n"
    'From: "Caller" <sip:2001@127.0.0.1>;tag=abc\r\n'
    "To: <sip:frontdesk@127.0.0.1>\r\n"
    "Call-ID: call-1@127.0.0.9\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:2001@127.0.0.9:5070>\r\n"
    "Max-Forwards: 69\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
).encode()


def test_parse_request_keeps_values_verbatim_and_in_order():
    message = sipwire.parse(INVITE)
    assert message.method == "INVITE" and message.uri == "sip:frontdesk@127.0.0.2:5080"
    assert message.get_all("Via") == [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy;rport",
        "SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcaller;received=127.0.0.9",
    ]
    assert message.cseq == (1, "INVITE") and message.from_tag == "abc" and message.to_tag is None
    assert message.body == b"v=0\n"


def test_compact_lowercase_and_unspaced_headers():
    """Cases #23-#25: pyVoIP 1.6.8 answers none of these."""
    raw = (
        "OPTIONS sip:frontdesk@h SIP/2.0\r\n"
        "v:SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK1\r\n"
        "f: <sip:a@h>;tag=1\r\nt:<sip:frontdesk@h>\r\ni: x1\r\ncseq:7 OPTIONS\r\nl: 0\r\n\r\n"
    ).encode()
    message = sipwire.parse(raw)
    assert message.get("Call-ID") == "x1" and message.cseq == (7, "OPTIONS")
    assert message.top_via.branch == "z9hG4bK1"


def test_folded_header_and_comma_separated_via():
    raw = (
        "BYE sip:x@h SIP/2.0\r\n"
        "Via: SIP/2.0/UDP a:1;branch=z9hG4bKa,\r\n SIP/2.0/UDP b:2;branch=z9hG4bKb\r\n"
        'From: "Doe, John" <sip:a@h>;tag=1\r\nTo: <sip:x@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n'
    ).encode()
    message = sipwire.parse(raw)
    assert [Via.parse(v).host for v in message.get_all("Via")] == ["a", "b"]
    assert NameAddr.parse(message.get("From")).display == "Doe, John"


def test_latin1_display_name_is_accepted():
    """Case #27."""
    raw = INVITE.replace(b'"Caller"', '"Müller"'.encode("latin-1"))
    assert NameAddr.parse(sipwire.parse(raw).get("From")).display == "Müller"


@pytest.mark.parametrize(
    "mutate,status",
    [
        (lambda m: m.replace(b"Call-ID: call-1@127.0.0.9\r\n", b""), 400),  # case #5
        (lambda m: m.replace(b"CSeq: 1 INVITE\r\n", b""), 400),  # case #6
        (lambda m: m.replace(b"Content-Length: 4", b"Content-Length: 400"), 400),  # case #4
        (lambda m: m.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (lambda m: m.replace(b"Content-Type: application/sdp\r\n", b""), 400),  # case #28
        (lambda m: m.replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1), 505),  # case #26
        (lambda m: m[:200], 400),  # case #3: cut in the headers
        (lambda m: b"\x07\xff" * 150, None),  # case #1: garbage is not answered
        (lambda m: m.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy;rport\r\n", b"")
         .replace(b"Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcaller;received=127.0.0.9\r\n", b""), None),
    ],
)
def test_malformed_messages_name_the_response(mutate, status):
    with pytest.raises(SipParseError) as caught:
        sipwire.parse(mutate(INVITE))
    assert caught.value.status == status


def test_keepalive_is_a_parse_error_without_response():
    with pytest.raises(SipParseError) as caught:
        sipwire.parse(b"\r\n\r\n")
    assert caught.value.status is None


def test_big_datagram_parses():
    """Case #7: a 12 kB header (pyVoIP truncates at 8192 bytes and drops it)."""
    raw = INVITE.replace(b"Max-Forwards: 69\r\n", b"X-Pad: " + b"a" * 12000 + b"\r\nMax-Forwards: 69\r\n")
    assert len(sipwire.parse(raw).get("X-Pad")) == 12000


def test_response_goes_to_rport_source_and_copies_via_and_record_route():
    """Cases #29/#30: responses follow the Via (RFC 3261 18.2.2, RFC 3581), not the registrar."""
    message = sipwire.parse(INVITE)
    source = ("127.0.0.1", 5999)
    assert sipwire.response_address(message, source) == ("127.0.0.1", 5999)
    response = sipwire.build_response(message, 180, source, to_tag="t1", record_route=True)
    raw = sipwire.serialize(response).decode()
    assert raw.startswith("SIP/2.0 180 Ringing\r\n")
    assert "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy;rport=5999\r\n" in raw
    assert "Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcaller;received=127.0.0.9\r\n" in raw
    assert "Record-Route: <sip:127.0.0.1:5060;lr;ftag=abc>\r\n" in raw
    assert "To: <sip:frontdesk@127.0.0.1>;tag=t1\r\n" in raw
    assert raw.endswith("Content-Length: 0\r\n\r\n")


def test_response_without_rport_goes_to_sent_by_port_and_stamps_received():
    message = sipwire.parse(INVITE.replace(b";branch=z9hG4bKproxy;rport", b";branch=z9hG4bKproxy"))
    assert sipwire.response_address(message, ("127.0.0.5", 4000)) == ("127.0.0.5", 5060)
    top = sipwire.build_response(message, 200, ("127.0.0.5", 4000)).get("Via")
    assert top.endswith(";received=127.0.0.5")


def test_uri_parsing():
    uri = SipUri.parse("<sip:2001@127.0.0.9:5070;transport=udp>")
    assert (uri.user, uri.host, uri.port, uri.params) == ("2001", "127.0.0.9", 5070, {"transport": "udp"})
    assert SipUri.parse("sip:proxy.example;lr").hostport() == ("proxy.example", 5060)
    with pytest.raises(ValueError):
        SipUri.parse("mailto:x@y")
