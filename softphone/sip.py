"""The SIP adapter: the only module that imports pyVoIP.

`SipEndpoint` subclasses pyVoIP 1.6.8's `SIPClient` and replaces the parts of it that act as
transport, transaction layer and registration, which is where the library's defects are
(../shared/reference/pyvoip-field-test.md, section 7).  Each override names what it fixes:

- start(): the receive thread starts at once (S5: SIP was ignored for 1 s after start) and
  registration never blocks (S16/G1: start() blocked 30 s with the registrar down);
- recv_loop()/recv(): one blocking select loop, no 10 ms polling, datagrams up to 64 KB (S3),
  a tolerant front end (softphone.sipwire) that answers 400/405/481/488/501/505 (S1-S4);
- parse_message(): INVITE server transactions: 180 at once with our Contact and the Record-Route
  set (C3, C4, C6), retransmitted INVITEs get the last response again, the 2xx is retransmitted
  until the ACK (C7), CANCEL gets 200 + 487 and is reported as a missed call (C10-C12), BYE
  and CANCEL for unknown dialogs get 481 (S4), OPTIONS gets 200 (case #9), re-INVITE is
  answered with the RFC 3264 direction and never restarts media (M14, M15), offers without
  PCMU/PCMA get 488 (M11), an INVITE without SDP gets our offer in the 200 (case #18);
- every response goes to the address RFC 3261 18.2.2 / RFC 3581 name (S8, S13, cases #29-#30);
- bye(): our own Via and branch, the dialog's route set, sent to the first route hop (C9, S12);
- register()/deregister(): softphone.registration, refreshed at 0.8 x the granted expiry, with
  back-off that never gives up (C15, G1-G3, S16-S18);
- gen_call_id()/gen_urn_uuid(): random per boot / stable per configured identity (S14, S15).

pyVoIP still provides the SDP parser (SIPMessage.parse_body), the client base and its
bookkeeping.  Nothing outside this module sees a pyVoIP type: callers get the dataclasses below.
The RTP side of pyVoIP (two polling threads per call, 8-bit audio) is not used at all; media is
softphone.media's single engine.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import select
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Callable

with warnings.catch_warnings():  # pyVoIP imports the deprecated audioop module
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyVoIP
    import pyVoIP.VoIP  # noqa: F401  (pyVoIP.SIP only imports cleanly after pyVoIP.VoIP)
    from pyVoIP.SIP import SIPClient, SIPMessage

from . import sdp, sipwire
from .registration import Registration, RegistrationSettings, Send, StateChanged
from .sdp import MediaOffer, Negotiated
from .sipdialog import T1, T2, TIMER_64T1, SipCall, ClientTransaction
from .sipout import OutboundAnswered, OutboundFailed, OutboundRinging, OutgoingCalls
from .sipwire import NameAddr, SipMessage, SipParseError, SipUri

log = logging.getLogger("frontdesk.sip")
wire_log = logging.getLogger("frontdesk.sip.wire")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
SIP_METHODS = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "PRACK", "SUBSCRIBE", "NOTIFY",
               "UPDATE", "MESSAGE", "REFER", "PUBLISH"}
USER_AGENT = f"frontdesk/0.1 (pyVoIP {pyVoIP.__version__})"


# --- what the adapter tells the agent ------------------------------------------------------


@dataclass(frozen=True)
class IncomingCall:
    key: str
    call_id: str
    caller: str
    caller_name: str
    called: str
    remote_addr: str
    offer: MediaOffer | None  # None: the INVITE had no SDP (our offer goes in the 200)
    negotiated: Negotiated | None
    invite_at: float  # monotonic time the INVITE datagram was read
    ringing_at: float  # monotonic time the 180 left


@dataclass(frozen=True)
class CallRefused:
    """An INVITE answered with a final error at once: line limit (486) or no common codec (488)."""

    call_id: str
    caller: str
    caller_name: str
    called: str
    remote_addr: str
    status: int
    invite_at: float
    reason: str


@dataclass(frozen=True)
class CallCancelled:
    key: str
    at: float


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK for our 200 arrived; `negotiated` is set when the ACK carried the answer to our offer."""

    key: str
    at: float
    negotiated: Negotiated | None
    remote: tuple[str, int] | None


@dataclass(frozen=True)
class CallEnded:
    key: str
    at: float
    by: str  # "caller" (BYE), "system" (no ACK / unreachable)
    reason: str


@dataclass(frozen=True)
class MediaChanged:
    """A re-INVITE (hold, resume, new address) was answered."""

    key: str
    at: float
    remote: tuple[str, int]
    negotiated: Negotiated
    on_hold: bool


@dataclass(frozen=True)
class DtmfInfo:
    key: str
    at: float
    digit: str


@dataclass(frozen=True)
class RegistrationEvent:
    state: str
    expires: int | None
    reason: str


SipEvent = (IncomingCall | CallRefused | CallCancelled | CallConfirmed | CallEnded | MediaChanged | DtmfInfo
            | RegistrationEvent | OutboundRinging | OutboundAnswered | OutboundFailed)


@dataclass
class SipSettings:
    listen: tuple[str, int] = ("127.0.0.1", 5060)
    user: str = "frontdesk"
    registrar: tuple[str, int] | None = None
    password: str = ""
    domain: str = ""
    public_address: str = ""  # what goes into Contact and SDP when the listen address is 0.0.0.0 or NATed
    register_expires: int = 300
    max_calls: int = 8


def _media_offer(body: bytes) -> MediaOffer | None:
    """pyVoIP's SDP parser, behind a sanitiser for what it chokes on (field test S2, M12, #21)."""
    lines = [line.strip() for line in body.decode("utf-8", "replace").splitlines() if "=" in line]
    formats: set[str] = set()
    for line in lines:
        if line.startswith("m="):
            formats.update(line.split()[3:])
    kept = [line for line in lines
            if not (line.startswith(("a=rtpmap:", "a=fmtp:")) and line[7 if line[2] == "f" else 9:].split(" ")[0]
                    not in formats)]
    raw = b"INVITE sip:sdp SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n" + "\r\n".join(kept).encode()
    try:
        parsed = SIPMessage(raw).body
        audio = next(m for m in parsed.get("m", []) if m["type"] == "audio")
    except Exception as error:  # pyVoIP raises anything from KeyError to UnboundLocalError
        log.info("unusable SDP (%s): %r", error, body[:200])
        return None
    connections = parsed.get("c") or []
    # Session- and media-level c= both present is legal (M12): the media level (last) wins.
    address = connections[-1]["address"] if connections else "0.0.0.0"
    rtpmap = {int(pt): f"{attr['rtpmap']['name']}/{attr['rtpmap']['frequency']}"
              for pt, attr in audio["attributes"].items() if pt.isdigit() and "rtpmap" in attr}
    direction = parsed.get("a", {}).get("transmit_type")
    return MediaOffer(address, audio["port"], tuple(int(pt) for pt in audio["methods"] if pt.isdigit()), rtpmap,
                      direction.value if direction is not None else "sendrecv")


class SipEndpoint(OutgoingCalls, SIPClient):
    """pyVoIP's SIP client with a transaction layer; thread-safe commands for the agent."""

    def __init__(self, settings: SipSettings, on_event: Callable[[SipEvent], None],
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings  # before pyVoIP's __init__, which calls gen_urn_uuid()
        registrar = settings.registrar or settings.listen
        super().__init__(registrar[0], registrar[1], settings.user, settings.password, phone=None,
                         myIP=settings.listen[0], myPort=settings.listen[1])
        self._emit = on_event
        self._clock = clock
        self._lock = threading.RLock()
        self._calls: dict[str, SipCall] = {}
        self._client_txs: dict[str, ClientTransaction] = {}
        self._invite_txs: dict[str, SipCall] = {}  # our INVITEs (softphone.sipout), by branch
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._registration: Registration | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self.accepting = True
        self.address = settings.listen

    # --- pyVoIP overrides -----------------------------------------------------------------

    def gen_call_id(self) -> str:  # S14: sha256(counter) repeats across restarts and agents
        return uuid.uuid4().hex + "@frontdesk"

    def gen_urn_uuid(self) -> str:  # S15: one instance id per identity, so a restart replaces its binding
        identity = f"{self.settings.user}@{self.settings.listen[0]}:{self.settings.listen[1]}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "frontdesk:" + identity))

    def start(self) -> None:
        """Bind and start receiving at once; registration runs in the background (S5, S16)."""
        if self.NSD:
            raise RuntimeError("SipEndpoint already started")
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.s.bind(self.settings.listen)
        self.out = self.s
        self.address = self.s.getsockname()
        self.myPort = self.address[1]
        self.NSD = True
        self._thread = threading.Thread(target=self.recv_loop, name="sip", daemon=True)
        self._thread.start()
        if self.settings.registrar:
            self.register()

    def register(self) -> bool:
        """Start (non-blocking) registration; state changes arrive as RegistrationEvent."""
        s = self.settings
        self._registration = Registration(RegistrationSettings(
            user=s.user, password=s.password, registrar=s.registrar, local=(self.contact_host(), self.address[1]),
            domain=s.domain, expires=s.register_expires, instance=self.gen_urn_uuid(), user_agent=USER_AGENT),
            call_id=self.gen_call_id())
        self._call_in_thread(lambda: self._drive_registration(self._registration.start(self._clock())))
        return True

    def deregister(self, timeout: float = 2.0) -> bool:
        """Send Expires: 0 and wait at most `timeout` (pyVoIP waited 30 s, G3)."""
        registration = self._registration
        if registration is None or registration.state != "registered":
            return False
        done = threading.Event()
        self._deregistered = done
        self._call_in_thread(lambda: self._drive_registration(registration.stop(self._clock())))
        return done.wait(timeout)

    def stop(self) -> None:
        if not self.NSD:
            return
        self.deregister()
        self.NSD = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.s.close()
        self._wake_r.close()
        self._wake_w.close()

    def recv_loop(self) -> None:
        """One blocking loop: datagrams, timers and wake-ups (S3: pyVoIP polled every 10 ms)."""
        while self.NSD:
            with self._lock:
                deadline = self._timers[0][0] if self._timers else None
            timeout = 0.5 if deadline is None else min(0.5, max(0.0, deadline - self._clock()))
            try:
                readable, _, _ = select.select([self.s, self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                break
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(4096)
                except OSError:
                    pass
            if self.s in readable:
                self.recv()
            self._run_timers()

    def recv(self) -> None:
        try:
            data, source = self.s.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            if self.NSD:
                log.warning("SIP socket error: %s", error)
            return
        now = self._clock()
        try:
            self.handle_datagram(data, source, now)
        except Exception:  # a bug for one message must never stop the agent answering
            log.exception("error handling a datagram from %s:%s", *source)

    def bye(self, request=None) -> None:  # pyVoIP's bye(request) copied the caller's Via (C9)
        raise NotImplementedError("use SipEndpoint.hangup(key)")

    # --- the agent's commands (thread-safe) -----------------------------------------------

    def answer(self, key: str, media: tuple[str, int]) -> Negotiated | None | bool:
        """Send the 200 OK with our SDP.  False when the call is gone (cancelled meanwhile)."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or call.state != "ringing":
                return False
            call.media = media
            if call.negotiated is not None:
                body = sdp.answer(call.negotiated, address=media[0], port=media[1],
                                  session_id=call.session_id, version=call.sdp_version)
            else:
                body = sdp.offer(address=media[0], port=media[1], session_id=call.session_id,
                                 version=call.sdp_version)
            response = sipwire.build_response(
                call.invite, 200, call.source, to_tag=call.local_tag, record_route=True,
                headers=self._contact_headers(), body=body)
            call.state = "answering"
            call.pending_ack_cseq = call.cseq
            self._send_final(call, sipwire.serialize(response))
        return call.negotiated if call.negotiated is not None else None

    def hangup(self, key: str, status: int = 480) -> None:
        """End a call from our side: BYE once answered, else a final error (480) for the INVITE."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or call.state == "ended":
                return
            if call.direction == "out" and call.state in ("calling", "proceeding"):
                self.cancel_dial(key)
                return
            if call.state == "ringing":
                response = sipwire.build_response(call.invite, status, call.source, to_tag=call.local_tag)
                call.pending_ack_cseq = call.cseq
                self._send_final(call, sipwire.serialize(response))
                self._end(call)
                return
            self._send_bye(call)
            self._end(call)

    def contact_host(self) -> str:
        if self.settings.public_address:
            return self.settings.public_address
        host = self.address[0]
        if host in ("0.0.0.0", ""):
            target = self.settings.registrar[0] if self.settings.registrar else "192.0.2.1"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.connect((target, 9))
                    host = probe.getsockname()[0]
                except OSError:
                    host = "127.0.0.1"
        return host

    def remote_media(self, key: str) -> tuple[str, int] | None:
        """Where the caller's offer asked us to send audio."""
        with self._lock:
            call = self._calls.get(key)
            return (call.offer.address, call.offer.port) if call and call.offer else None

    @property
    def active_calls(self) -> int:
        with self._lock:
            return len({id(call) for call in self._calls.values() if call.state != "ended"})

    @property
    def registration_state(self) -> str | None:
        return self._registration.state if self._registration else None

    # --- incoming datagrams ---------------------------------------------------------------

    def handle_datagram(self, data: bytes, source: tuple[str, int], now: float) -> None:
        try:
            message = sipwire.parse(data)
        except SipParseError as error:
            if error.status is not None and error.partial is not None:
                log.info("malformed request from %s:%s: %s -> %d", *source, error.reason, error.status)
                self._respond(error.partial, error.status, source, reason_text=error.reason)
            elif error.reason != "keep-alive":
                log.info("dropped undecodable datagram from %s:%s (%s)", *source, error.reason)
            return
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("<- %s:%s %s", source[0], source[1], message.start_line())
        with self._lock:
            if message.is_request:
                self._on_request(message, source, now)
            else:
                self._on_response(message, now)

    def _on_request(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        handler = {
            "INVITE": self._on_invite, "ACK": self._on_ack, "CANCEL": self._on_cancel, "BYE": self._on_bye,
            "OPTIONS": self._on_options, "INFO": self._on_info,
        }.get(request.method)
        if handler is not None:
            handler(request, source, now)
        elif request.method in SIP_METHODS:
            self._respond(request, 405, source, headers=[("Allow", ALLOW)])
        else:
            self._respond(request, 501, source, headers=[("Allow", ALLOW)])

    def _on_invite(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        key = f"{request.call_id};{request.from_tag}"
        call = self._calls.get(key)
        if request.to_tag:
            if call is None or call.local_tag != request.to_tag or call.state == "ended":
                self._respond(request, 481, source)
            else:
                self._on_reinvite(call, request, source, now)
            return
        if call is not None:
            if call.branch == request.top_via.branch and call.cseq == request.cseq[0]:
                if call.last_response is not None:  # a retransmission: the last response again
                    self._send(call.last_response, call.reply_to)
            else:  # the same request forked to us twice (RFC 3261 8.2.2.2; field test C14)
                self._respond(request, 482, source)
            return
        caller = NameAddr.parse(request.get("From"))
        called = NameAddr.parse(request.get("To"))
        refused = None
        offer = negotiated = None
        if not self.accepting:
            refused = (503, "agent is shutting down")
        elif self.active_calls >= self.settings.max_calls:
            refused = (486, "every line is busy")
        elif request.body:
            offer = _media_offer(request.body)
            negotiated = sdp.negotiate(offer) if offer else None
            if negotiated is None:
                refused = (488, "no common codec (PCMU/PCMA)" if offer else "unusable SDP")
        if refused is not None:
            headers = [("Warning", f'305 frontdesk "{refused[1]}"')] if refused[0] == 488 else []
            if refused[0] == 503:
                headers.append(("Retry-After", "5"))
            self._respond(request, refused[0], source, headers=headers + [("Allow", ALLOW)], to_tag=sipwire.new_tag())
            self._emit(CallRefused(request.call_id, caller.user or caller.uri, caller.display, called.user or "",
                                   f"{source[0]}:{source[1]}", refused[0], now, refused[1]))
            return
        contact = request.get("Contact")
        call = SipCall(key=key, invite=request, source=source, reply_to=sipwire.response_address(request, source),
                     local_tag=sipwire.new_tag(), route_set=request.get_all("Record-Route"),
                     remote_target=NameAddr.parse(contact).uri if contact else caller.uri,
                     offer=offer, negotiated=negotiated)
        self._calls[key] = call
        ringing = sipwire.build_response(request, 180, source, to_tag=call.local_tag, record_route=True,
                                         headers=self._contact_headers())
        call.last_response = sipwire.serialize(ringing)
        self._send(call.last_response, call.reply_to)
        self._emit(IncomingCall(key, request.call_id, caller.user or caller.uri, caller.display,
                                called.user or "", f"{source[0]}:{source[1]}", offer, negotiated, now,
                                self._clock()))

    def _on_reinvite(self, call: SipCall, request: SipMessage, source: tuple[str, int], now: float) -> None:
        if call.state == "answering" and call.pending_ack_cseq == call.cseq:
            self._respond(request, 491, source, to_tag=call.local_tag)  # our 200 is not ACKed yet
            return
        offer = _media_offer(request.body) if request.body else None
        negotiated = sdp.negotiate(offer) if offer else None
        if negotiated is None or call.media is None:
            self._respond(request, 488, source, to_tag=call.local_tag,
                          headers=[("Warning", '305 frontdesk "no common codec"')])
            return
        call.sdp_version += 1
        body = sdp.answer(negotiated, address=call.media[0], port=call.media[1], session_id=call.session_id,
                          version=call.sdp_version)
        if request.get("Contact"):
            call.remote_target = NameAddr.parse(request.get("Contact")).uri
        response = sipwire.build_response(request, 200, source, to_tag=call.local_tag,
                                          headers=self._contact_headers(), body=body)
        data = sipwire.serialize(response)
        reply_to = sipwire.response_address(request, source)
        self._send(data, reply_to)
        call.pending_ack_cseq = request.cseq[0]
        self._retransmit_until_ack(call, data, reply_to, now)
        self._emit(MediaChanged(call.key, now, (offer.address, offer.port), negotiated, offer.on_hold))

    def _on_ack(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        call = self._calls.get(f"{request.call_id};{request.from_tag}")
        if call is None or call.pending_ack_cseq != request.cseq[0]:
            return  # an ACK for nothing we wait for is absorbed (case #33)
        call.pending_ack_cseq = None
        call.retransmit_at = None
        if call.state != "answering":
            return
        call.state = "confirmed"
        negotiated, remote = call.negotiated, None
        if call.offer is None:  # delayed offer: the answer is in the ACK (RFC 3261 13.2.1)
            answer = _media_offer(request.body) if request.body else None
            negotiated = sdp.negotiate(answer) if answer else None
            if negotiated is None:
                log.info("call %s: ACK without a usable SDP answer; hanging up", call.key)
                self._send_bye(call)
                self._end(call)
                self._emit(CallEnded(call.key, now, "system", "no SDP answer in ACK"))
                return
            call.negotiated, remote = negotiated, (answer.address, answer.port)
        elif call.offer is not None:
            remote = (call.offer.address, call.offer.port)
        self._emit(CallConfirmed(call.key, now, negotiated, remote))

    def _on_cancel(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        call = self._calls.get(f"{request.call_id};{request.from_tag}")
        if call is None or call.branch != request.top_via.branch or call.cseq != request.cseq[0]:
            self._respond(request, 481, source)
            return
        self._respond(request, 200, source, to_tag=call.local_tag)
        if call.state != "ringing":
            return  # already answered: the caller will send BYE (RFC 3261 9.2)
        terminated = sipwire.build_response(call.invite, 487, call.source, to_tag=call.local_tag)
        call.pending_ack_cseq = call.cseq
        self._send_final(call, sipwire.serialize(terminated))
        self._end(call)
        self._emit(CallCancelled(call.key, now))

    def _on_bye(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        call = self._calls.get(f"{request.call_id};{request.from_tag}")
        if call is None or call.local_tag != request.to_tag or call.state == "ended":
            self._respond(request, 481, source)
            return
        self._respond(request, 200, source, to_tag=call.local_tag)
        self._end(call)
        self._emit(CallEnded(call.key, now, "caller", "BYE"))

    def _on_options(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        self._respond(request, 200, source, to_tag=sipwire.new_tag() if not request.to_tag else None,
                      headers=[("Allow", ALLOW), ("Accept", "application/sdp"), ("Accept-Language", "zh, en"),
                               ("Supported", "")] + self._contact_headers())

    def _on_info(self, request: SipMessage, source: tuple[str, int], now: float) -> None:
        call = self._calls.get(f"{request.call_id};{request.from_tag}")
        if call is None or call.local_tag != request.to_tag or call.state == "ended":
            self._respond(request, 481, source)
            return
        self._respond(request, 200, source)
        content_type = (request.get("Content-Type") or "").lower()
        if content_type.startswith(("application/dtmf-relay", "application/dtmf")):
            text = request.body.decode("utf-8", "replace")
            signal = next((line.split("=", 1)[1].strip() for line in text.splitlines()
                           if line.lower().startswith("signal=")), text.strip())
            if signal[:1] and signal[0] in "0123456789*#ABCDabcd":
                self._emit(DtmfInfo(call.key, now, signal[0].upper()))

    def _on_response(self, response: SipMessage, now: float) -> None:
        registration = self._registration
        if registration is not None and response.call_id == registration.call_id:
            self._drive_registration(registration.on_response(response, now))
            return
        try:
            branch = response.top_via.branch
        except (ValueError, IndexError):
            return
        if branch in self._invite_txs and response.cseq[1] == "INVITE":  # a CANCEL shares the branch
            self._on_invite_response(self._invite_txs[branch], response, now)
            return
        tx = self._client_txs.get(branch or "")
        if tx is not None and response.status >= 200:
            del self._client_txs[branch]
            if tx.on_done:
                tx.on_done(response.status)

    # --- sending --------------------------------------------------------------------------

    def _contact_headers(self) -> list[tuple[str, str]]:
        return [("Contact", f"<sip:{self.settings.user}@{self.contact_host()}:{self.address[1]}>"),
                ("User-Agent", USER_AGENT)]

    def _respond(self, request: SipMessage, status: int, source: tuple[str, int], *, to_tag: str | None = None,
                 headers: list[tuple[str, str]] | None = None, reason_text: str | None = None) -> None:
        if request.method == "ACK":
            return  # never respond to an ACK
        extra = list(headers or [])
        if reason_text and status >= 400:
            extra.append(("Warning", f'399 frontdesk "{reason_text[:120]}"'))
        if to_tag is None and request.to_tag is None and status > 100:
            to_tag = sipwire.new_tag()
        response = sipwire.build_response(request, status, source, to_tag=to_tag, headers=extra)
        try:
            address = sipwire.response_address(request, source)
        except (ValueError, IndexError):
            address = source
        self._send(sipwire.serialize(response), address)

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("-> %s:%s %s", address[0], address[1], data.split(b"\r\n", 1)[0].decode("utf-8", "replace"))
        try:
            self.s.sendto(data, address)
        except OSError as error:
            log.warning("send to %s:%s failed: %s", address[0], address[1], error)

    def _send_final(self, call: SipCall, data: bytes) -> None:
        """A final response to the INVITE, retransmitted (T1 doubling to T2) until ACKed or 32 s."""
        call.last_response = data
        self._send(data, call.reply_to)
        self._retransmit_until_ack(call, data, call.reply_to, self._clock())

    def _retransmit_until_ack(self, call: SipCall, data: bytes, to: tuple[str, int], now: float) -> None:
        call.final_sent_at = now
        call.retransmit_every = T1
        call.retransmit_at = now + T1
        expected = call.pending_ack_cseq

        def tick() -> None:
            if call.pending_ack_cseq != expected or call.retransmit_at is None:
                return
            current = self._clock()
            if current - call.final_sent_at >= TIMER_64T1:
                call.retransmit_at = None
                if call.state == "answering":  # RFC 3261 13.3.1.4: no ACK -> end the dialog
                    log.info("call %s: no ACK for our 200 in 32 s; hanging up", call.key)
                    self._send_bye(call)
                    self._end(call)
                    self._emit(CallEnded(call.key, current, "system", "no ACK"))
                return
            self._send(data, to)
            call.retransmit_every = min(call.retransmit_every * 2, T2)
            call.retransmit_at = current + call.retransmit_every
            self._schedule(call.retransmit_at, tick)

        self._schedule(call.retransmit_at, tick)

    def _send_bye(self, call: SipCall) -> None:
        """Our BYE (RFC 3261 15.1.1, 12.2.1.1): own Via and branch, route set, to the first hop."""
        call.local_cseq += 1
        invite = call.invite
        headers = [("Via", f"SIP/2.0/UDP {self.contact_host()}:{self.address[1]};branch={sipwire.new_branch()};rport"),
                   ("Max-Forwards", "70")]
        headers += [("Route", route) for route in call.route_set]
        local = call.local_party or (f"{invite.get('To')};tag={call.local_tag}" if not invite.to_tag
                                     else invite.get("To"))
        remote = call.remote_party or invite.get("From")
        headers += [("From", local), ("To", remote), ("Call-ID", invite.call_id),
                    ("CSeq", f"{call.local_cseq} BYE"), ("User-Agent", USER_AGENT)]
        data = sipwire.serialize(SipMessage(method="BYE", uri=call.remote_target, headers=headers))
        try:
            hop = SipUri.parse(NameAddr.parse(call.route_set[0]).uri if call.route_set else call.remote_target)
            to = hop.hostport()
            if not hop.host:
                raise ValueError("no host")
        except ValueError:
            to = call.source
        self._start_client_tx(data, to)

    def _start_client_tx(self, data: bytes, to: tuple[str, int], on_done=None) -> None:
        branch = sipwire.parse(data).top_via.branch
        now = self._clock()
        tx = ClientTransaction(data, to, now, now + T1, T1, on_done)
        self._client_txs[branch] = tx
        self._send(data, to)

        def tick() -> None:
            if self._client_txs.get(branch) is not tx:
                return
            current = self._clock()
            if current - tx.started >= TIMER_64T1:
                del self._client_txs[branch]
                if tx.on_done:
                    tx.on_done(None)
                return
            self._send(tx.data, tx.to)
            tx.interval = min(tx.interval * 2, T2)
            self._schedule(current + tx.interval, tick)

        self._schedule(tx.next_at, tick)

    def _end(self, call: SipCall) -> None:
        call.state = "ended"
        call.forget_at = self._clock() + TIMER_64T1  # keep it to absorb retransmissions (Timer J/H)
        self._schedule(call.forget_at, lambda: self._forget(call))

    def _forget(self, call: SipCall) -> None:
        if call.state != "ended":
            return
        for key in [k for k, c in self._calls.items() if c is call]:  # an outgoing call has two keys
            del self._calls[key]
        self._invite_txs = {b: c for b, c in self._invite_txs.items() if c is not call}

    # --- registration and timers ----------------------------------------------------------

    def _drive_registration(self, outputs: list) -> None:
        registration = self._registration
        for output in outputs:
            if isinstance(output, Send):
                self._send(output.data, output.to)
            elif isinstance(output, StateChanged):
                log.info("registration %s (%s)", output.state, output.reason or f"expires {output.expires}")
                self._emit(RegistrationEvent(output.state, output.expires, output.reason))
                if output.state == "unregistered" and getattr(self, "_deregistered", None):
                    self._deregistered.set()
        if registration is not None and registration.next_timer is not None:
            at = registration.next_timer
            self._schedule(at, lambda: self._drive_registration(registration.on_timer(self._clock()))
                           if registration.next_timer == at else None)

    def _schedule(self, at: float, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (at, next(self._timer_seq), callback))
        self._wake()

    def _call_in_thread(self, callback: Callable[[], None]) -> None:
        self._schedule(self._clock(), callback)

    def _wake(self) -> None:
        if threading.current_thread() is self._thread:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _run_timers(self) -> None:
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > self._clock():
                    return
                _, _, callback = heapq.heappop(self._timers)
                try:
                    callback()
                except Exception:
                    log.exception("SIP timer failed")
