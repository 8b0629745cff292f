"""Self-tests of the rig (tests/rig): every peer starts, does its job on loopback, and stops
without leaving a process behind.  The whole file runs in well under 30 s.

The rig's fixtures are imported here so the file works on its own; test arguments with the same
names are those fixtures (hence the F811 waiver)."""
# ruff: noqa: F811
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig import media, procs
from tests.rig import sipclient as sc
from tests.rig.baresip import Baresip
from tests.rig.fixtures import (  # noqa: F401  (fixtures)
    RigMedia,
    baresip_factory,
    kamailio,
    kamailio_factory,
    require,
    rig_media,
    sip_peer,
    stock_agent_factory,
)
from tests.rig.kamailio import Kamailio, parse_ul_dump
from tests.rig.ports import free_endpoint, free_rtp_range, udp_port_is_free
from tests.rig.sipp import SCENARIO_DIR, run_sipp, start_sipp
from tests.rig.stock import StockAgent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """After the module: nothing the rig started (kamailio, sipp, baresip, agents) is alive."""
    before = {id(p) for p in procs.started()}
    yield
    ours = [p for p in procs.started() if id(p) not in before]
    alive = [(p.name, pid) for p in ours for pid in p.leftover_pids()]
    assert not alive, f"rig processes still alive: {alive}"


# ------------------------------------------------------------------------------------------------
# ports
# ------------------------------------------------------------------------------------------------
def test_free_endpoints_are_distinct_and_bindable() -> None:
    eps = [free_endpoint() for _ in range(40)]
    assert len(set(eps)) == len(eps)
    assert len({e.host for e in eps}) > 1, "components should get distinct 127.0.0.x addresses"
    assert all(e.host.startswith("127.") and e.host != "127.0.0.1" for e in eps)
    assert all(udp_port_is_free(e.host, e.port) for e in eps)
    lo, hi = free_rtp_range("127.0.0.1", 6)
    assert lo % 2 == 0 and hi == lo + 5
    assert all(udp_port_is_free("127.0.0.1", p) for p in range(lo, hi + 1))


# ------------------------------------------------------------------------------------------------
# media
# ------------------------------------------------------------------------------------------------
def test_media_g711_tones_and_pcap_with_loss_and_dtx(tmp_path: Path) -> None:
    tone = media.tone(1004, 2.0, -20.0)
    assert abs(media.peak_dbfs(tone) - -20.0) < 0.1
    assert media.tone_sinad(media.ulaw_decode(media.ulaw_encode(tone)), 1004) > 33
    assert media.tone_sinad(media.alaw_decode(media.alaw_encode(tone)), 1004) > 33
    assert media.rms_dbfs(media.silence(0.1)) == float("-inf")
    assert set(media.ulaw_encode(media.silence(0.1)).tolist()) == {media.ULAW_SILENCE}

    info = media.make_rtp_pcap(tone, tmp_path / "t.pcap", codec="PCMA", drop_every=10, dtx_gap=(0.5, 1.0))
    pkts = media.read_rtp_pcap(info.path)
    assert info.frames == 100 and info.packets == len(pkts) == 100 - 25 - 10 + 2  # frames 50-74 gap; 59, 69 both
    assert {p[1] for p in pkts} == {8}
    seqs = [p[2] for p in pkts]
    assert seqs[-1] - seqs[0] == 98, "seq advances over dropped packets (frame 99 itself is dropped)"
    assert all((b[3] - a[3]) == 160 * (b[2] - a[2]) for a, b in zip(pkts, pkts[1:])), "timestamps follow"
    assert 1000 + 9 not in seqs and 1000 + 60 not in seqs  # a dropped 10th packet, a DTX-gap packet
    decoded = media.alaw_decode(b"".join(p[4] for p in pkts[:9]))
    assert media.tone_sinad(decoded, 1004) > 30

    stereo = media.write_wav(tmp_path / "st.wav", media.tone(440, 0.5, -6.0).repeat(2).reshape(-1, 2), rate=16000)
    rate, samples = media.read_wav(stereo)
    assert rate == 16000 and samples.shape == (4000, 2)


# ------------------------------------------------------------------------------------------------
# Kamailio
# ------------------------------------------------------------------------------------------------
def test_kamailio_config_passes_check_starts_and_stops_cleanly(tmp_path: Path) -> None:
    require("kamailio", "kamcmd")
    k = Kamailio(tmp_path / "kam", password="secret", max_expires=10, fr_inv_timer_ms=30000)
    out = k.check_config()
    assert "config file ok" in out
    text = k.cfg_path.read_text()
    assert f"listen=udp:{k.host}:{k.port}" in text and 'pv_www_authenticate("$td", "secret"' in text
    assert str(k.ctl_path) in text and "/var/run" not in text

    k.start()
    try:
        pids = k.pids()
        assert k.pid in pids and len(pids) >= 3, "main process plus its workers, all in one session"
        assert not udp_port_is_free(k.host, k.port)
        assert sc.probe_options(k.address, k.host) == 200
        assert k.ul_dump() == []
        main_pid = k.pid
        k.restart()  # registrar outage: stop, start again on the same address
        assert k.pid != main_pid and k.address == (k.host, k.port)
        assert all(not procs.pid_alive(p) for p in pids), "old instance fully gone after restart"
        assert sc.probe_options(k.address, k.host) == 200
        pids = k.pids()
    finally:
        k.stop()
    assert all(not procs.pid_alive(p) for p in pids), f"left behind: {[p for p in pids if procs.pid_alive(p)]}"
    assert udp_port_is_free(k.host, k.port)
    assert "REQ OPTIONS" in k.log_text()
    assert k.start_seconds is not None and k.start_seconds < 5


def test_raw_sipclient_gets_200_for_options_from_kamailio(kamailio: Kamailio, sip_peer: sc.SipPeer) -> None:
    req = sc.options(kamailio.uri, sip_peer.addr)
    sent = sip_peer.send(req, kamailio.address)
    assert sent.startswith(b"OPTIONS " + kamailio.uri.encode() + b" SIP/2.0\r\n")
    got = sip_peer.expect_response(req, timeout=2.0)
    assert got is not None and got.msg is not None
    assert got.msg.status == 200
    assert got.addr == kamailio.address
    via = got.msg.vias[0]
    assert sc.header_param(via, "branch") == req.top_branch
    assert sc.header_param(via, "rport") == str(sip_peer.port), via  # RFC 3581 filled in by the proxy


def test_ul_dump_parser() -> None:
    text = """{
	Domains: {
		Domain: {
			Domain: location
			AoRs: {
				Info: {
					AoR: 1001
					Contacts: {
						Contact: {
							Address: sip:1001@127.0.0.9:5080
							Expires: 57
							User-Agent: pyVoIP 1.6.8
						}
						Contact: {
							Address: sip:1001@127.0.0.9:5081
							Expires: expired
						}
					}
				}
			}
		}
	}
}"""
    b = parse_ul_dump(text)
    assert [(x.aor, x.contact, x.expires) for x in b] == [
        ("1001", "sip:1001@127.0.0.9:5080", 57), ("1001", "sip:1001@127.0.0.9:5081", 0)]
    assert b[0].fields["User-Agent"] == "pyVoIP 1.6.8"


# ------------------------------------------------------------------------------------------------
# SIPp
# ------------------------------------------------------------------------------------------------
def test_sipp_registers_with_digest_auth_and_binding_shows(kamailio_factory: Callable[..., Kamailio],
                                                            tmp_path: Path) -> None:
    require("sipp")
    kam = kamailio_factory(password="s3cret", max_expires=10)
    contact = free_endpoint()
    res = run_sipp("register", kam.hostport, workdir=tmp_path / "sipp", local_ip=contact.host, service="alice",
                   auth_user="alice", auth_pass="s3cret", scenario_vars={"CONTACT": contact.hostport},
                   timeout_s=10)
    res.assert_ok()
    assert [d for d, _ in res.first_lines()] == ["sent", "received", "sent", "received"]
    assert res.all_messages[1].status == 401 and "Digest" in (res.all_messages[1].header("WWW-Authenticate") or "")
    assert res.log_has("REGISTERED")
    b = kam.wait_for_binding("alice")
    assert b.contact == f"sip:alice@{contact.hostport}"
    assert 0 < b.expires <= 10, "max_expires caps the requested 3600 s"

    bad = run_sipp("register", kam.hostport, workdir=tmp_path / "sipp", local_ip=free_endpoint().host,
                   service="mallory", auth_user="mallory", auth_pass="wrong", timeout_s=10)
    assert bad.failed == 1 and bad.successful == 0
    assert kam.bindings("mallory") == []


def test_sipp_uac_calls_sipp_uas_through_kamailio(kamailio: Kamailio, rig_media: RigMedia, tmp_path: Path) -> None:
    require("sipp")
    uas_ep = free_endpoint()
    run_sipp("register", kamailio.hostport, workdir=tmp_path / "sipp", local_ip=uas_ep.host, service="desk",
             auth_user="desk", auth_pass="secret", scenario_vars={"CONTACT": uas_ep.hostport}, timeout_s=10,
             ).assert_ok()
    uas = start_sipp("uas", None, workdir=tmp_path / "sipp", local_ip=uas_ep.host, local_port=uas_ep.port,
                     service="desk", duration_ms=300, calls=1, scenario_vars={"WAIT_BYE_MS": "10000"})
    try:
        caller = free_endpoint()
        res = run_sipp("uac_normal", kamailio.hostport, workdir=tmp_path / "sipp", local_ip=caller.host,
                       service="desk", duration_ms=500, pcap=rig_media.speech_pcmu, timeout_s=15)
        ures = uas.wait(5)
    finally:
        uas.stop()
    res.assert_ok()
    ures.assert_ok()
    assert res.log_has("answered") and ures.log_has("UAS got BYE")
    [t] = res.timings
    assert t["final_status"] == 200
    t180, t200 = t["invite_to_180_ms"], t["invite_to_200_ms"]
    assert t180 is not None and t200 is not None
    assert t180 < 250 <= t200 < 5000, t  # the UAS rings 300 ms
    assert res.rtd.get("1") and abs(res.rtd["1"][0] - t200) < 5  # SIPp's own INVITE->200 agrees
    [ok200] = [m for m in res.all_messages if m.status == 200 and m.cseq == (1, "INVITE")]
    ftag = (ok200.header("From") or "").split("tag=")[1]
    assert ok200.header("Record-Route") == f"<sip:{kamailio.hostport};lr;ftag={ftag}>"
    # the caller's ACK and BYE target the UAS contact and carry the proxy's Route
    ack = next(m for m in res.all_messages if m.method == "ACK")
    assert ack.first_line == f"ACK sip:desk@{uas_ep.hostport} SIP/2.0"
    assert kamailio.hostport in (ack.header("Route") or "")
    bye_at_uas = next(m for m in ures.all_messages if m.method == "BYE")
    assert kamailio.hostport in (bye_at_uas.header("Via") or ""), "BYE went through the proxy"


def test_sipp_scenarios_expected_paths_against_a_conformant_peer(tmp_path: Path) -> None:
    """Each scenario's *correct* outcome (487, 488, 481, delayed offer, hold -> recvonly) succeeds
    against a small RFC-conformant UAS written with sipclient; a broken scenario would fail here."""
    require("sipp")
    with _ConformantUas() as uas:
        target = f"{uas.peer.host}:{uas.peer.port}"
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("uac_cancel", {"duration_ms": 200}, "RESULT 487"),
            ("uac_g729only", {}, "RESULT 488"),
            ("uac_delayed_offer", {"duration_ms": 100, "service": "answer"}, "OFFER in 200"),
            ("bye_unknown", {}, "RESULT 481"),
            ("options", {}, "RESULT 200"),
            ("uac_hold", {"duration_ms": 100, "service": "answer"}, "HOLD answered with a=recvonly"),
            ("uac_c_both", {"duration_ms": 100, "service": "answer"}, "caller BYE answered 200"),
            ("uac_pcma_first", {"duration_ms": 100, "service": "answer"}, "caller BYE answered 200"),
        ]
        running = [(name, needle, start_sipp(name, target, workdir=tmp_path / "sipp", local_ip=free_endpoint().host,
                                             **{"service": "desk", **kw}))
                   for name, kw, needle in cases]
        results = [(name, needle, p.wait(15)) for name, needle, p in running]
    for name, needle, res in results:
        assert res.returncode == 0 and res.successful == 1, f"{name}: {res.describe()}"
        assert res.log_has(needle), f"{name}: {res.describe()}"
    assert not any("NO OFFER" in line for _, _, r in results for line in r.logs)
    assert uas.seen_ack_with_sdp, "delayed offer: the ACK must carry the answer"
    scenario_files = {p.stem for p in SCENARIO_DIR.glob("*.xml")}
    assert {"uac_normal", "uac_pcma", "uac_wait_bye", "register", "uas", "uas_registrar"} <= scenario_files


# ------------------------------------------------------------------------------------------------
# stock pyVoIP agent
# ------------------------------------------------------------------------------------------------
def test_stock_pyvoip_agent_registers_and_answers_a_sipp_call(
    kamailio: Kamailio, stock_agent_factory: Callable[..., StockAgent], rig_media: RigMedia, tmp_path: Path,
) -> None:
    require("sipp")
    agent = stock_agent_factory(registrar=kamailio.hostport, user="frontdesk", password="secret",
                                play=rig_media.prompt_wav)
    b = kamailio.wait_for_binding("frontdesk", 2.0)
    assert b.contact.startswith(f"sip:frontdesk@{agent.sip.hostport}")
    assert b.fields.get("User-Agent") == "pyVoIP 1.6.8"
    res = run_sipp("uac_normal", kamailio.hostport, workdir=tmp_path / "sipp", local_ip=free_endpoint().host,
                   service="frontdesk", duration_ms=1500, pcap=rig_media.speech_pcmu, timeout_s=15)
    res.assert_ok()
    [t] = res.timings
    t180, t200 = t["invite_to_180_ms"], t["invite_to_200_ms"]
    assert t180 is not None and t200 is not None
    assert t180 < 500
    # stock pyVoIP runs the call callback through Timer(1, ...): the 200 comes >= 1 s after the INVITE
    assert 950 <= t200 < 3000, t
    ended = agent.wait_event("ended", 5.0)
    assert ended["by"] == "caller"
    names = [e["event"] for e in agent.events()]
    assert names[:2] == ["start", "registered"] and "call_received" in names and "answered" in names
    rec = agent.wait_event("recorded", 2.0)
    rate, samples = media.read_wav(Path(rec["path"]))
    assert rate == 8000 and len(samples) > 8000, "about 1.5 s recorded on the 20 ms clock"
    assert media.rms_dbfs(samples) > -40, "caller speech came through"
    agent.stop()
    assert agent.stop_seconds is not None and agent.stop_seconds < 5
    assert kamailio.bindings("frontdesk") == [], "stock phone.stop() de-registers"


# ------------------------------------------------------------------------------------------------
# baresip
# ------------------------------------------------------------------------------------------------
def test_baresip_registers_with_digest_auth(kamailio: Kamailio, baresip_factory: Callable[..., Baresip],
                                            rig_media: RigMedia) -> None:
    bs = baresip_factory(registrar=kamailio.hostport, user="2001", password="secret",
                         audio_wav=rig_media.speech_wav)
    cfg = (bs.config_dir / "config").read_text()
    assert "net_interface\t\t127.0.0.1" in cfg and f"sip_listen\t\t{bs.sip_host}:{bs.sip_port}" in cfg
    t0 = time.monotonic()
    bs.start()
    bs.wait_registered(5.0)
    registered_s = time.monotonic() - t0
    b = kamailio.wait_for_binding("2001", 2.0)
    assert f"@{bs.sip_host}:{bs.sip_port}" in b.contact
    assert b.fields.get("User-Agent", "").startswith("baresip")
    result = bs.stop()
    assert result.registered and not result.timed_out
    assert registered_s < 5
    assert kamailio.bindings("2001") == [], "baresip de-registers when stopped"


def test_baresip_dials_a_sipp_uas_through_kamailio(kamailio: Kamailio, baresip_factory: Callable[..., Baresip],
                                                   rig_media: RigMedia, tmp_path: Path) -> None:
    require("sipp")
    uas_ep = free_endpoint()
    run_sipp("register", kamailio.hostport, workdir=tmp_path / "sipp", local_ip=uas_ep.host, service="desk",
             auth_user="desk", auth_pass="secret", scenario_vars={"CONTACT": uas_ep.hostport}, timeout_s=10,
             ).assert_ok()
    uas = start_sipp("uas", None, workdir=tmp_path / "sipp", local_ip=uas_ep.host, local_port=uas_ep.port,
                     service="desk", duration_ms=100, calls=1, scenario_vars={"WAIT_BYE_MS": "10000"})
    bs = baresip_factory(registrar=kamailio.hostport, user="2001", password="secret",
                         audio_wav=rig_media.speech_wav)
    try:
        result = bs.dial(f"sip:desk@{kamailio.hostport}", 2)
        ures = uas.wait(5)
    finally:
        uas.stop()
    assert result.returncode == 0 and not result.timed_out, result.log[-2000:]
    assert result.established, result.log[-2000:]
    ures.assert_ok()
    invite = next(m for m in ures.all_messages if m.method == "INVITE")
    assert "c=IN IP4 127.0.0.1" in invite.body, "net_interface puts the loopback address in the SDP"
    assert "PCMU" in invite.body and "PCMA" in invite.body
    [sent] = result.sent_wavs
    rate, samples = media.read_wav(sent)
    assert rate == 8000 and media.rms_dbfs(samples) > -40, "baresip sent the speech WAV"
    assert len(result.received_wavs) == 1


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
class _ConformantUas:
    """A tiny RFC 3261-conformant UAS on a SipPeer, enough for the scenario self-test:
    180 then waits (CANCEL -> 200 + 487); R-URI user "answer" -> 200 at once (offer in the 200
    when the INVITE had none); G.729-only -> 488; re-INVITE answered per RFC 3264;
    BYE/CANCEL for unknown dialogs -> 481; OPTIONS -> 200."""

    def __init__(self) -> None:
        self.peer = sc.SipPeer()
        self.stop = threading.Event()
        self.seen_ack_with_sdp = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_ConformantUas":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2.0)
        self.peer.close()

    def _run(self) -> None:
        pending: dict[str, tuple[sc.SipMessage, str]] = {}
        dialogs: set[str] = set()
        contact = f"<sip:desk@{self.peer.host}:{self.peer.port}>"
        sdp_hdr = [("Content-Type", "application/sdp")]
        while not self.stop.is_set():
            got = self.peer.recv(0.05)
            if got is None:
                continue
            data, src = got
            try:
                m = sc.parse(data)
            except sc.SipParseError:
                continue
            if m.is_response:
                continue
            cid = m.call_id or ""
            if m.method == "INVITE" and m.to_tag:  # re-INVITE
                offer = m.sdp()
                answer_dir = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
                    (offer.direction or "") if offer else "", "sendrecv")
                body = sc.sdp_offer(self.peer.host, self.peer.port + 2, direction=answer_dir).encode()
                self.peer.send(sc.response(m, 200, "OK", contact=contact, headers=sdp_hdr, body=body), src)
            elif m.method == "INVITE":
                tag = sc.new_tag()
                offer = m.sdp()
                if offer is not None and not {0, 8} & set(offer.payload_types):
                    self.peer.send(sc.response(m, 488, "Not Acceptable Here", to_tag=tag), src)
                    continue
                self.peer.send(sc.response(m, 180, "Ringing", to_tag=tag, contact=contact), src)
                if (m.uri or "").startswith("sip:answer@"):
                    body = sc.sdp_offer(self.peer.host, self.peer.port + 2).encode()
                    self.peer.send(sc.response(m, 200, "OK", to_tag=tag, contact=contact, headers=sdp_hdr,
                                               body=body), src)
                    dialogs.add(cid)
                else:
                    pending[cid] = (m, tag)
            elif m.method == "CANCEL":
                if cid in pending:
                    inv, tag = pending.pop(cid)
                    self.peer.send(sc.response(m, 200, "OK", to_tag=tag), src)
                    self.peer.send(sc.response(inv, 487, "Request Terminated", to_tag=tag), src)
                else:
                    self.peer.send(sc.response(m, 481, "Call/Transaction Does Not Exist"), src)
            elif m.method == "ACK":
                if m.body and m.sdp() is not None:
                    self.seen_ack_with_sdp = True
            elif m.method == "BYE":
                if cid in dialogs:
                    dialogs.discard(cid)
                    self.peer.send(sc.response(m, 200, "OK"), src)
                else:
                    self.peer.send(sc.response(m, 481, "Call/Transaction Does Not Exist"), src)
            elif m.method == "OPTIONS":
                self.peer.send(sc.response(m, 200, "OK", to_tag=sc.new_tag(),
                                           headers=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]), src)
