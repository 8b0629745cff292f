"""Each defect of stock pyVoIP 1.6.8 seen on the wire, as a test that passes on the agent's adapter
and fails on stock pyVoIP (bench/stock_agent.py: pyVoIP's public API, unpatched).

The stock runs are marked xfail(strict=True): if stock pyVoIP ever passed one, the test would
report it, so each test is shown to be able to fail.  Defect ids refer to
../shared/reference/pyvoip-field-test.md (sections 4 and 7).
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from recordings.prompts import PromptLibrary
from recordings.wavio import read_wav
from softphone import g711
from tests.agentproc import AgentProcess
from tests.rig import media, sipclient
from tests.rig.fixtures import require
from tests.rig.kamailio import Kamailio
from tests.rig.ports import free_endpoint, free_rtp_range, udp_port_bound
from tests.rig.sipp import run_sipp
from tests.rig.stock import StockAgent

pytestmark = pytest.mark.integration


def on_both(reason: str, raises: type[BaseException] | tuple = AssertionError):
    """Run on the agent and on stock pyVoIP; stock must fail, and fail an assertion (`raises`),
    not a set-up error (reason: the defect)."""
    return pytest.mark.parametrize("impl", ["frontdesk", pytest.param(
        "stock", marks=pytest.mark.xfail(strict=True, raises=raises, reason=f"stock pyVoIP 1.6.8: {reason}"))])


@dataclass
class Subject:
    """The phone under test, registered as `frontdesk` at a Kamailio, reachable directly too."""

    impl: str
    address: tuple[str, int]
    process: object
    expected_audio: np.ndarray  # what it plays to a caller
    workdir: Path
    kamailio: Kamailio | None = None
    extra: dict = field(default_factory=dict)

    def caller_audio(self) -> list[np.ndarray]:
        """The caller side of each recorded call (16-bit)."""
        if self.impl == "stock":
            return [read_wav(p)[1][:, 0] for p in self.process.recordings()]
        rows = self.process.wait_calls(1, 10.0)
        return [read_wav(r["recording"])[1][:, 0] for r in rows if r["recording"]]

    @property
    def proxy(self) -> tuple[str, int]:
        """Where callers send requests: the Kamailio the phone registered with (else the phone)."""
        return self.kamailio.address if self.kamailio else self.address

    def in_dialog(self, response) -> tuple[str, int]:
        """Next hop for the caller's in-dialog requests: the proxy when it record-routed."""
        return self.proxy if response.record_route else sipclient.uri_hostport(response.contact_uri)

    def stop(self) -> None:
        self.process.stop()


def start_subject(impl: str, tmp_path: Path, kamailio: Kamailio | None, *, answer_delay_ms: int = 0,
                  settle: bool = True, registrar=None, rtp: tuple[int, int] | None = None,
                  hangup_after_ms: int = 0, config: dict | None = None) -> Subject:
    endpoint = free_endpoint()
    tmp_path.mkdir(parents=True, exist_ok=True)
    registrar = registrar or (kamailio.address if kamailio else None)
    if impl == "stock":
        prompt = media.write_wav(tmp_path / "prompt.wav", media.tone(440, 20.0, -10.0))
        agent = StockAgent(tmp_path / "stock", registrar=f"{registrar[0]}:{registrar[1]}", user="frontdesk",
                           password="secret", sip=endpoint, answer_delay_ms=answer_delay_ms, play=prompt,
                           rtp=rtp, hangup_after_ms=hangup_after_ms)
        try:
            agent.start(timeout_s=8.0, settle_s=1.1 if settle else 0.0)
        except BaseException:
            agent.stop(5.0)  # SIGTERM ends it even while start() blocks on a dead registrar
            raise
        return Subject(impl, (endpoint.host, endpoint.port), agent, read_wav(prompt)[1][:, 0], tmp_path, kamailio)
    cfg = dict(config or {})
    if rtp:
        cfg.setdefault("sip", {})["rtp_ports"] = f"{rtp[0]}-{rtp[1]}"
    agent = AgentProcess(tmp_path / "agent", listen=(endpoint.host, endpoint.port), registrar=registrar,
                         password="secret", answer_delay_ms=answer_delay_ms, config=cfg).start()
    return Subject(impl, (endpoint.host, endpoint.port), agent, PromptLibrary().render("greeting").pcm, tmp_path,
                   kamailio)


@pytest.fixture
def subject_factory(tmp_path, kamailio_factory):
    made: list[Subject] = []

    def make(impl: str, *, with_kamailio: bool = True, **kw) -> Subject:
        kam = kamailio_factory(password="secret") if with_kamailio else None
        subject = start_subject(impl, tmp_path / f"s{len(made)}", kam, **kw)
        made.append(subject)
        return subject

    yield make
    for subject in made:
        try:
            subject.stop()
        except Exception:
            pass


class Media:
    """A caller's RTP socket: receives what the phone sends."""

    def __init__(self, host: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        low, _ = free_rtp_range(host, 2)
        self.sock.bind((host, low))
        self.sock.settimeout(0.05)
        self.address = (host, low)

    def collect(self, seconds: float) -> list[tuple[float, bytes]]:
        packets, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, _ = self.sock.recvfrom(2048)
                packets.append((time.monotonic(), data))
            except socket.timeout:
                pass
        return packets

    def send_rtp(self, to, pcm: np.ndarray, codec="PCMU", drop_every=0, seconds=None):
        """Send 20 ms packets in real time (bounded), optionally dropping every k-th."""
        frames = len(pcm) // 160 if seconds is None else int(seconds * 50)
        start = time.monotonic()
        for n in range(frames):
            if drop_every and n % drop_every == drop_every - 1:
                continue
            payload = g711.encode(pcm[n * 160:(n + 1) * 160], codec)
            header = struct.pack("!BBHII", 0x80, 0 if codec == "PCMU" else 8, 1000 + n, 160 * n, 0xABCDEF)
            due = start + n * 0.02
            time.sleep(max(0.0, due - time.monotonic()))
            self.sock.sendto(header + payload, to)

    def close(self):
        self.sock.close()


def call(peer: sipclient.SipPeer, subject: Subject, *, codecs=("PCMU",), media_addr=None, sdp="", timeout=5.0,
         direct=False, **kw):
    """Send an INVITE through the proxy (or `direct`ly); return (invite, responses up to the final one)."""
    to = subject.address if direct else subject.proxy
    inv = sipclient.invite(f"sip:frontdesk@{to[0]}:{to[1]}", (peer.host, peer.port),
                           codecs=codecs, media=media_addr, sdp=sdp, **kw)
    peer.send(inv, to)
    responses, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = peer.expect(lambda m: m.is_response and m.call_id == inv.call_id, deadline - time.monotonic())
        if got is None:
            break
        if got.msg.status == 100:  # the proxy's own 100 Trying
            continue
        responses.append(got)
        if got.msg.status >= 200:
            break
    assert responses, "no response to the INVITE"
    return inv, responses


# --- answering ------------------------------------------------------------------------------


@on_both("the callback runs 1 s after the INVITE (Timer(1, ...), C5)")
def test_answer_when_the_agent_decides_not_a_second_later(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    inv, responses = call(sip_peer, subject)
    ringing = next(r for r in responses if r.msg.status == 180)
    ok = next(r for r in responses if r.msg.status == 200)
    assert ringing is responses[0]
    assert ok.t - ringing.t < 0.5  # pyVoIP: 1 s


@on_both("SIP is ignored for 1 s after start() (Timer(1, recv_loop), C2/S5)")
def test_sip_is_answered_right_after_start(impl, tmp_path, kamailio_factory, sip_peer):
    kam = kamailio_factory(password="secret")
    subject = start_subject(impl, tmp_path, kam, answer_delay_ms=5000, settle=False)
    try:
        t0 = time.monotonic()
        inv, responses = call(sip_peer, subject, timeout=0.4)
        assert responses and responses[0].msg.status == 180 and responses[0].t - t0 < 0.3
    finally:
        subject.stop()


@on_both("CANCEL gets no 487 and the call is answered anyway (C10)")
def test_cancel_gets_487_and_the_call_is_never_answered(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=1500)
    inv, responses = call(sip_peer, subject, timeout=0.5)
    assert responses[0].msg.status == 180
    sip_peer.send(sipclient.cancel(inv), subject.proxy)
    got = [(r.msg.status, r.msg.cseq[1]) for r in sip_peer.drain(3.0)
           if r.msg and r.msg.call_id == inv.call_id and r.msg.is_response]
    assert (200, "CANCEL") in got and (487, "INVITE") in got
    assert (200, "INVITE") not in got  # never answered after the caller gave up


@on_both("OPTIONS is dropped: PBX qualify marks it unreachable (case #9)")
def test_options_gets_200(impl, subject_factory, sip_peer):
    subject = subject_factory(impl)
    request = sipclient.options(f"sip:frontdesk@{subject.address[0]}:{subject.address[1]}", (sip_peer.host, sip_peer.port))
    sip_peer.send(request, subject.address)
    got = sip_peer.expect_response(request, 1.0)
    assert got is not None and got.msg.status == 200


@on_both("BYE and CANCEL for unknown dialogs get 200, not 481 (S4, cases #31/#32)")
def test_unknown_dialog_gets_481(impl, subject_factory, sip_peer):
    subject = subject_factory(impl)
    request = sipclient.bye_unknown(f"sip:frontdesk@{subject.address[0]}:{subject.address[1]}",
                                    (sip_peer.host, sip_peer.port))
    sip_peer.send(request, subject.address)
    got = sip_peer.expect_response(request, 1.0)
    assert got is not None and got.msg.status == 481


@on_both("responses go to the registrar, not to the Via / rport (S8, S13, cases #29/#30)")
def test_responses_go_where_the_via_says(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=3000)
    inv, responses = call(sip_peer, subject, timeout=1.0, direct=True)  # we are not the registrar
    assert [r.msg.status for r in responses][:1] == [180]  # it reached us, the address in our Via


@on_both("no Record-Route in 180/200, so ACK and BYE bypass the proxy (C6, S10, S11)")
def test_record_route_is_copied_into_180_and_200(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=200)
    route = f"<sip:{sip_peer.host}:{sip_peer.port};lr;ftag=rig>"
    inv, responses = call(sip_peer, subject, record_route=[route])
    assert {r.msg.status for r in responses} >= {180, 200}
    for got in responses:
        assert route in got.msg.record_route, got.msg.status
    sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))


@on_both("the 200 OK is sent once and never retransmitted (C7, S6)")
def test_200_is_retransmitted_until_ack(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    inv, responses = call(sip_peer, subject)
    first = responses[-1]
    assert first.msg.status == 200
    later = [r for r in sip_peer.drain(1.8) if r.msg and r.msg.call_id == inv.call_id and r.msg.status == 200]
    assert len(later) >= 2  # T1 = 0.5 s, then 1 s: at +0.5 and +1.5 s
    assert abs((later[0].t - first.t) - 0.5) < 0.25  # T1
    sip_peer.send(sipclient.ack(inv, first.msg), subject.in_dialog(first.msg))
    assert not [r for r in sip_peer.drain(1.5) if r.msg and r.msg.status == 200]


# --- media ------------------------------------------------------------------------------------


@on_both("an offer without PCMU/PCMA is answered 200 with an empty m= line (M11)")
def test_no_common_codec_gets_488(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    inv, responses = call(sip_peer, subject, codecs=("G729",))
    assert responses[-1].msg.status == 488
    sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.proxy)  # hop-by-hop ACK of a failure


@on_both("c= at session and media level gives no RTP at all (M12)")
def test_sdp_with_c_twice_gets_rtp(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    rtp = Media(sip_peer.host)
    try:
        offer = sipclient.sdp_offer(rtp.address[0], rtp.address[1], ("PCMU",), session_c=True, media_c=True)
        inv, responses = call(sip_peer, subject, sdp=offer)
        assert responses[-1].msg.status == 200 and "m=audio" in responses[-1].msg.body.decode()
        sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))
        assert len(rtp.collect(1.0)) > 40
    finally:
        rtp.close()


@on_both("an INVITE without SDP gets 180 and then nothing (case #18)")
def test_invite_without_sdp_is_answered_with_an_offer(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    inv, responses = call(sip_peer, subject, sdp=None)
    assert responses and responses[-1].msg.status == 200 and "m=audio" in responses[-1].msg.body.decode()


@on_both("PCMA is sent as mu-law bytes (R8, M10)")
def test_pcma_is_a_law_on_the_wire(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    rtp = Media(sip_peer.host)
    try:
        inv, responses = call(sip_peer, subject, codecs=("PCMA",), media_addr=rtp.address)
        sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))
        packets = rtp.collect(2.0)
    finally:
        rtp.close()
    payload = b"".join(p[12:] for _, p in packets if p[1] & 0x7F == 8)
    assert len(payload) > 8000
    heard = g711.decode(payload, "PCMA").astype(float)
    expected = subject.expected_audio[:16000].astype(float)
    # decoded as A-law it is the audio the phone plays (find the best alignment)
    window = expected[:8000]
    corr = np.correlate(heard[:12000], window, mode="valid")
    best = corr.max() / (np.sqrt(np.sum(window ** 2)) * np.sqrt(np.max(np.convolve(heard[:12000] ** 2, np.ones(8000), "valid"))))
    assert best > 0.9


@on_both("a lost RTP packet becomes 20 ms of full-scale negative samples (R2, M8)")
def test_lost_packet_is_silence_not_noise(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    rtp = Media(sip_peer.host)
    try:
        inv, responses = call(sip_peer, subject, media_addr=rtp.address)
        sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))
        rtp.send_rtp(_rtp_target(responses[-1].msg), media.tone(1004, 3.0, -20.0), drop_every=10)
        sip_peer.send(sipclient.bye(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))
        sip_peer.drain(0.5)
    finally:
        rtp.close()
    time.sleep(1.0)
    (caller,) = subject.caller_audio()[-1:]
    assert len(caller) > 8000 * 2
    assert np.abs(caller.astype(int)).max() < 16000  # a -20 dBFS tone peaks near 3300; no full-scale clicks


def _rtp_target(answer) -> tuple[str, int]:
    sdp = answer.sdp()
    return sdp.connection, sdp.audio_port


@on_both("hold (sendonly) is answered sendrecv and a re-INVITE starts a second RTP sender (M14, M15)")
def test_hold_is_answered_recvonly_and_media_is_not_doubled(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0)
    first, second = Media(sip_peer.host), Media(sip_peer.host)
    try:
        inv, responses = call(sip_peer, subject, media_addr=first.address)
        answer = responses[-1].msg
        sip_peer.send(sipclient.ack(inv, answer), subject.in_dialog(answer))
        time.sleep(0.5)
        reinvite = _reinvite(inv, answer, second.address, "sendonly", cseq=2)
        sip_peer.send(reinvite, subject.in_dialog(answer))
        held = sip_peer.expect_response(reinvite, 2.0)
        assert held is not None and held.msg.status == 200
        assert "a=recvonly" in held.msg.body.decode()
        sip_peer.send(sipclient.ack(reinvite, held.msg), subject.in_dialog(answer))
        resume = _reinvite(inv, answer, second.address, "sendrecv", cseq=3)
        sip_peer.send(resume, subject.in_dialog(answer))
        resumed = sip_peer.expect_response(resume, 2.0)
        sip_peer.send(sipclient.ack(resume, resumed.msg), subject.in_dialog(answer))
        second.collect(0.3)  # what queued up meanwhile
        rate = len(second.collect(2.0)) / 2.0
        assert 45 <= rate <= 55  # one sender at 50 packets/s (pyVoIP: 100/s)
    finally:
        first.close()
        second.close()


def _reinvite(inv, answer, media_addr, direction, cseq):
    offer = sipclient.sdp_offer(media_addr[0], media_addr[1], ("PCMU",), direction=direction, session_id=7)
    h = sipclient.Headers()
    via = inv.vias[-1]
    branch = sipclient.header_param(via, "branch")
    h.add("Via", via.replace(f"branch={branch}", f"branch={sipclient.new_branch()}"))
    h.add("Max-Forwards", "70")
    for route in reversed(answer.record_route):
        h.add("Route", route)
    h.add("From", inv.headers.get("From"))
    h.add("To", answer.headers.get("To"))
    h.add("Call-ID", inv.call_id)
    h.add("CSeq", f"{cseq} INVITE")
    h.add("Contact", inv.headers.get("Contact"))
    h.add("Content-Type", "application/sdp")
    return sipclient.SipMessage(f"INVITE {answer.contact_uri} SIP/2.0", h, offer.encode())


# --- its own requests -------------------------------------------------------------------------


@on_both("its BYE copies the caller's Via and branch and has no Route (C9, S12, S13)")
def test_own_bye_has_its_own_via_and_follows_the_route_set(impl, subject_factory, sip_peer):
    subject = subject_factory(impl, answer_delay_ms=0, hangup_after_ms=800)
    route = f"<sip:{sip_peer.host}:{sip_peer.port};lr;ftag=rig>"
    inv, responses = call(sip_peer, subject, record_route=[route])
    sip_peer.send(sipclient.ack(inv, responses[-1].msg), subject.in_dialog(responses[-1].msg))
    if impl == "frontdesk":
        time.sleep(0.8)
        subject.process.stop()  # SIGTERM: active calls get a BYE
    bye = sip_peer.expect(lambda m: m.is_request and m.method == "BYE", 5.0)
    assert bye is not None
    origin = bye.msg.vias[-1]  # the BYE's originator, below the proxy's Via
    assert sipclient.header_param(origin, "branch") != inv.top_branch  # a new transaction (pyVoIP: the INVITE's)
    assert f"{subject.address[0]}:{subject.address[1]}" in origin  # the phone's own sent-by
    assert bye.msg.headers.get_all("Route") == [route]  # it followed the route set through the proxy


# --- registration -------------------------------------------------------------------------


@on_both("the registrar's granted expiry is ignored: refreshed at 115 s, calls get 404 (C15, S18)")
def test_registration_is_refreshed_before_the_granted_expiry(impl, tmp_path, kamailio_factory, sip_peer):
    kam = kamailio_factory(password="secret", max_expires=10, min_expires=5, default_expires=10)
    subject = start_subject(impl, tmp_path, kam, answer_delay_ms=0)
    try:
        time.sleep(13.0)  # past the granted 10 s
        result = run_sipp("uac_normal", kam.hostport, service="frontdesk", duration_ms=500, timeout_s=15,
                          workdir=tmp_path, local_ip=sip_peer.host)
        assert result.successful == 1, result.describe()
    finally:
        subject.stop()


@on_both("with the registrar down, start() blocks 30 s (G1)", raises=(AssertionError, TimeoutError))
def test_registrar_down_at_start_does_not_block(impl, tmp_path, sip_peer):
    dead = free_endpoint()  # nothing listens there
    subject = start_subject(impl, tmp_path, None, registrar=(dead.host, dead.port), answer_delay_ms=5000,
                            settle=False)
    try:
        request = sipclient.options(f"sip:frontdesk@{subject.address[0]}:{subject.address[1]}",
                                    (sip_peer.host, sip_peer.port))
        sip_peer.send(request, subject.address)
        assert sip_peer.expect_response(request, 1.0) is not None
    finally:
        subject.stop()


@on_both("after a registrar outage the phone does not register again (G2, S16)", raises=(AssertionError, TimeoutError))
def test_registration_recovers_after_a_registrar_outage(impl, tmp_path, kamailio_factory):
    kam = kamailio_factory(password="secret", max_expires=20, min_expires=5, default_expires=20)
    subject = start_subject(impl, tmp_path, kam, answer_delay_ms=0)
    try:
        kam.wait_for_binding("frontdesk", 3.0)
        kam.restart(down_s=3.0)  # the location table is in memory: the binding is gone
        binding = kam.wait_for_binding("frontdesk", 20.0)  # back-off 2 s, 4 s, 8 s ...
        assert binding.expires > 0
    finally:
        subject.stop()


# --- RTP ports --------------------------------------------------------------------------------


def test_rtp_ports_are_released_after_every_call(agent_factory, rig_media, tmp_path):
    """Two RTP ports for the whole agent: twelve calls one after another and two at once all work
    (pyVoIP keeps every incoming call's port booked: V3; shown in-process below)."""
    require("sipp")
    low, high = free_rtp_range("127.0.0.1", 4)
    agent = agent_factory(answer_delay_ms=0, config={"sip": {"rtp_ports": f"{low}-{low + 3}"}})
    target = f"{agent.listen[0]}:{agent.listen[1]}"
    for n in range(6):
        run_sipp("uac_normal", target, pcap=rig_media.speech_pcmu, duration_ms=300, timeout_s=15, workdir=tmp_path,
                 local_ip="127.0.0.1", name=f"seq{n}").assert_ok(1)
    run_sipp("uac_normal", target, pcap=rig_media.speech_pcmu, duration_ms=1500, calls=2, rate=10, limit=2,
             timeout_s=15, workdir=tmp_path, local_ip="127.0.0.1", name="pair").assert_ok(2)
    rows = agent.wait_calls(8)
    assert all(r["sip_code"] == 200 and r["recording_ms"] for r in rows)
    assert not any(udp_port_bound(agent.listen[0], p) for p in (low, low + 2))  # all closed again


@pytest.mark.xfail(strict=True, reason="stock pyVoIP 1.6.8: incoming calls never release their RTP port (V3, V10)")
def test_stock_pyvoip_books_a_port_per_call_forever():
    import pyVoIP.VoIP as voip
    from pyVoIP.SIP import SIPMessage
    phone = voip.VoIPPhone("127.0.0.1", 9, "u", "p", myIP="127.0.0.1", sipPort=0, rtpPortLow=30900,
                           rtpPortHigh=30999)
    sdp = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n" \
          "a=rtpmap:0 PCMU/8000\r\n"
    for n in range(3):
        raw = (f"INVITE sip:u@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{n}\r\n"
               f"From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:u@127.0.0.1>\r\nCall-ID: c{n}\r\nCSeq: 1 INVITE\r\n"
               f"Contact: <sip:a@127.0.0.1:5999>\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
               f"{sdp}").encode()
        call_ = voip.VoIPCall(phone, voip.CallState.RINGING, SIPMessage(raw), n, "127.0.0.1")
        call_.bye()  # the caller hangs up
    assert phone.assignedPorts == []  # fails: three ports stay booked
