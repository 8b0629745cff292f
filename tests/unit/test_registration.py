"""Registration as a sans-I/O machine with a fake clock (field test 4.4 G1-G4, C15)."""
from softphone import sipwire
from softphone.registration import Registration, RegistrationSettings, Send, StateChanged

REGISTRAR = ("127.0.0.1", 5099)


def make(expires=300):
    return Registration(RegistrationSettings(user="frontdesk", password="secret", registrar=REGISTRAR,
                                             local=("127.0.0.2", 5080), expires=expires, instance="u-1"))


def sent(outputs):
    return [sipwire.parse(o.data) for o in outputs if isinstance(o, Send)]


def states(outputs):
    return [(o.state, o.expires) for o in outputs if isinstance(o, StateChanged)]


def reply(request, status, headers=()):
    response = sipwire.build_response(request, status, ("127.0.0.2", 5080), to_tag="r1", headers=list(headers))
    return sipwire.parse(sipwire.serialize(response))


def test_digest_challenge_then_granted_expiry_drives_refresh():
    """C15: the registrar grants 60 s of the 300 asked; refresh at 48 s, not pyVoIP's 115 s."""
    reg = make()
    (first,) = sent(reg.start(0.0))
    assert first.method == "REGISTER" and first.get("Expires") == "300" and first.get("Authorization") is None
    assert first.uri == "sip:127.0.0.1:5099"
    (second,) = sent(reg.on_response(reply(first, 401, [("WWW-Authenticate", 'Digest realm="127.0.0.1", nonce="n1"')]), 0.01))
    assert second.cseq[0] == first.cseq[0] + 1 and second.call_id == first.call_id
    assert 'uri="sip:127.0.0.1:5099"' in second.get("Authorization")
    contact = '<sip:frontdesk@127.0.0.2:5080;transport=udp>;expires=60'
    out = reg.on_response(reply(second, 200, [("Contact", contact)]), 0.02)
    assert states(out) == [("registered", 60)]
    assert abs(reg.next_timer - (0.02 + 48.0)) < 1e-6
    (refresh,) = sent(reg.on_timer(48.1))
    assert refresh.cseq[0] == second.cseq[0] + 1 and refresh.call_id == first.call_id


def test_registrar_down_retransmits_then_backs_off_without_stopping():
    """G1/G2: no answer -> Timer E retransmissions, Timer F after 32 s, then retries forever."""
    reg = make()
    reg.start(0.0)
    times, now, out = [], 0.0, []
    while now < 32.0:
        now = reg.next_timer
        out = reg.on_timer(now)
        if sent(out):
            times.append(round(now, 2))
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert states(out) == [("retrying", None)] and reg.state == "retrying"
    delays = []
    for _ in range(6):  # each retry cycle: one new REGISTER after the back-off, then 32 s of silence
        start = reg.next_timer
        delays.append(round(start - now, 1))
        now = start
        while True:
            out = reg.on_timer(now)
            if states(out):
                break
            now = reg.next_timer
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]


def test_recovers_when_registrar_returns():
    reg = make()
    (first,) = sent(reg.start(0.0))
    reg.on_response(reply(first, 503), 0.1)
    assert reg.state == "retrying"
    (retry,) = sent(reg.on_timer(reg.next_timer))
    assert states(reg.on_response(reply(retry, 200), 2.2)) == [("registered", 300)]


def test_wrong_password_is_not_hammered():
    reg = make()
    (first,) = sent(reg.start(0.0))
    challenge = [("WWW-Authenticate", 'Digest realm="r", nonce="n1"')]
    (second,) = sent(reg.on_response(reply(first, 401, challenge), 0.1))
    out = reg.on_response(reply(second, 401, challenge), 0.2)
    assert states(out)[0][0] == "retrying" and reg.next_timer == 0.2 + 60.0


def test_stale_responses_and_other_call_ids_are_ignored():
    reg = make()
    (first,) = sent(reg.start(0.0))
    reg.on_response(reply(first, 401, [("WWW-Authenticate", 'Digest realm="r", nonce="n"')]), 0.1)
    assert reg.on_response(reply(first, 200), 0.2) == []  # old CSeq
    assert reg.state == "unregistered"


def test_deregister_sends_expires_zero():
    reg = make()
    (first,) = sent(reg.start(0.0))
    reg.on_response(reply(first, 200), 0.1)
    (bye,) = sent(reg.stop(1.0))
    assert bye.get("Expires") == "0"
    assert states(reg.on_response(reply(bye, 200), 1.1)) == [("unregistered", None)]
