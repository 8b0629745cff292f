"""Outgoing calls (the agent calling a customer back, R13): the INVITE client transaction.

A mixin of `softphone.sip.SipEndpoint` (which owns the socket, the lock and the timers).
RFC 3261 17.1.1 and 13.2: the INVITE is retransmitted until a response (Timer A/B); a 401/407
challenge is answered once with digest credentials; a 2xx creates the dialog (route set from the
Record-Route in reverse, remote target from the Contact) and is ACKed, every retransmission of it
too; a final error is ACKed on the same branch.  `cancel_dial` sends CANCEL while it rings.
pyVoIP 1.6.8's `VoIPPhone.call()` does none of the transaction work (and sends to the registrar
only), so the adapter builds outgoing calls itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import sdp, sipwire
from .digest import Challenge, authorization
from .sdp import Negotiated
from .sipdialog import T1, T2, TIMER_64T1, SipCall
from .sipwire import NameAddr, SipMessage, SipUri

log = logging.getLogger("frontdesk.sip")


@dataclass(frozen=True)
class OutboundRinging:
    key: str
    at: float
    status: int


@dataclass(frozen=True)
class OutboundAnswered:
    key: str
    at: float
    negotiated: Negotiated | None
    remote: tuple[str, int] | None


@dataclass(frozen=True)
class OutboundFailed:
    key: str
    at: float
    status: int  # the final response, or 408 when nothing answered, 487 after our CANCEL
    reason: str


class OutgoingCalls:
    """Methods SipEndpoint gains for calls it places."""

    def dial(self, target: str, media: tuple[str, int], call_id: str | None = None) -> str:
        """Place a call to `target` (a number or a SIP URI); returns the call's key ("out:<Call-ID>")."""
        with self._lock:
            uri = self._target_uri(target)
            call_id = call_id or self.gen_call_id()
            tag = sipwire.new_tag()
            s = self.settings
            domain = s.domain or (s.registrar[0] if s.registrar else self.contact_host())
            local = f"<sip:{s.user}@{domain}>;tag={tag}"
            call = SipCall(key=f"out:{call_id}", invite=SipMessage(), source=self._next_hop(uri), reply_to=("", 0),
                           local_tag=tag, route_set=[], remote_target=uri, offer=None, negotiated=None,
                           state="calling", direction="out", local_party=local)
            call.media = media
            call.local_cseq = 1
            self._calls[call.key] = call
            self._send_invite(call, uri, None, 0)
            return call.key

    def cancel_dial(self, key: str) -> None:
        """Give up on a call that still rings (RFC 3261 9.1: CANCEL once a provisional came)."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or call.direction != "out" or call.state not in ("calling", "proceeding"):
                return
            if call.state == "calling":  # nothing heard yet: stop retransmitting, report no answer
                call.retransmit_at = None
                self._end(call)
                self._emit(OutboundFailed(call.key, self._clock(), 408, "no response"))
                return
            invite = call.invite
            headers = [("Via", invite.get_all("Via")[0]), ("Max-Forwards", "70"), ("From", invite.get("From")),
                       ("To", invite.get("To")), ("Call-ID", invite.call_id), ("CSeq", f"{call.cseq} CANCEL"),
                       ("User-Agent", invite.get("User-Agent") or "")]
            self._start_client_tx(sipwire.serialize(SipMessage(method="CANCEL", uri=invite.uri, headers=headers)),
                                  call.source)
            call.state = "cancelling"

    # --- internals (under the endpoint's lock) -------------------------------------------

    def _target_uri(self, target: str) -> str:
        if target.startswith(("sip:", "sips:")):
            return target
        s = self.settings
        if not s.registrar:
            raise ValueError(f"cannot dial {target!r} without a registrar: give a SIP URI (sip:{target}@host)")
        domain = s.domain or s.registrar[0]
        port = "" if s.registrar[1] == 5060 or s.domain else f":{s.registrar[1]}"
        return f"sip:{target}@{domain}{port}"

    def _next_hop(self, uri: str) -> tuple[str, int]:
        """Registered mode: everything goes through the registrar (outbound proxy); direct: the URI's host."""
        if self.settings.registrar:
            return self.settings.registrar
        return SipUri.parse(uri).hostport()

    def _send_invite(self, call: SipCall, uri: str, challenge: Challenge | None, challenge_status: int) -> None:
        from .sip import USER_AGENT  # the module that imports pyVoIP names the user agent
        host, port = self.contact_host(), self.address[1]
        body = sdp.offer(address=call.media[0], port=call.media[1], session_id=call.session_id,
                         version=call.sdp_version)
        headers = [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={sipwire.new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", call.local_party),
            ("To", f"<{uri}>"),
            ("Call-ID", call.key[4:]),
            ("CSeq", f"{call.local_cseq} INVITE"),
            ("Contact", f"<sip:{self.settings.user}@{host}:{port}>"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"),
            ("User-Agent", USER_AGENT),
        ]
        if challenge is not None:
            name = "Authorization" if challenge_status == 401 else "Proxy-Authorization"
            headers.append((name, authorization(challenge, method="INVITE", uri=uri, username=self.settings.user,
                                                password=self.settings.password)))
        call.invite = SipMessage(method="INVITE", uri=uri, headers=headers, body=body)
        call.invite.headers.append(("Content-Type", "application/sdp"))
        data = sipwire.serialize(call.invite)
        call.invite = sipwire.parse(data)
        self._invite_txs[call.invite.top_via.branch] = call
        self._send(data, call.source)
        now = self._clock()
        call.final_sent_at = now  # Timer B starts
        call.retransmit_every = T1
        call.retransmit_at = now + T1
        branch = call.invite.top_via.branch

        def timer_a() -> None:  # retransmit until any response; give up after 64*T1 (Timer B)
            if call.retransmit_at is None or call.invite.top_via.branch != branch or call.state != "calling":
                return
            current = self._clock()
            if current - call.final_sent_at >= TIMER_64T1:
                call.retransmit_at = None
                self._end(call)
                self._emit(OutboundFailed(call.key, current, 408, "no response to INVITE"))
                return
            self._send(data, call.source)
            call.retransmit_every = min(call.retransmit_every * 2, T2)
            call.retransmit_at = current + call.retransmit_every
            self._schedule(call.retransmit_at, timer_a)

        self._schedule(call.retransmit_at, timer_a)

    def _on_invite_response(self, call: SipCall, response: SipMessage, now: float) -> None:
        status = response.status
        if response.top_via.branch != call.invite.top_via.branch:
            return
        if status < 200:
            call.retransmit_at = None  # Timer A stops; Timer C is the agent's ring timeout
            if call.state == "calling":
                call.state = "proceeding"
            if status in (180, 183):
                self._emit(OutboundRinging(call.key, now, status))
            return
        if 200 <= status < 300:
            self._on_invite_success(call, response, now)
            return
        self._ack_failure(call, response)
        if call.state == "ended":
            return  # a retransmitted final response: ACKed again, nothing more
        if status in (401, 407) and not call.auth_sent and call.state in ("calling", "proceeding"):
            header = response.get("WWW-Authenticate" if status == 401 else "Proxy-Authenticate") or ""
            try:
                challenge = Challenge.parse(header)
            except ValueError:
                challenge = None
            if challenge is not None and challenge.supported and self.settings.password:
                call.auth_sent = True
                call.local_cseq += 1
                call.state = "calling"
                self._send_invite(call, call.invite.uri, challenge, status)
                return
        self._end(call)
        self._emit(OutboundFailed(call.key, now, status, response.reason))

    def _on_invite_success(self, call: SipCall, response: SipMessage, now: float) -> None:
        first = call.state in ("calling", "proceeding", "cancelling")
        if first:
            contact = response.get("Contact")
            call.remote_target = NameAddr.parse(contact).uri if contact else call.invite.uri
            call.route_set = list(reversed(response.get_all("Record-Route")))
            call.remote_party = response.get("To")
            call.retransmit_at = None
            self._calls[f"{response.call_id};{response.to_tag}"] = call  # in-dialog requests name it so
        self._send_ack(call, response)
        if not first:
            return  # a retransmitted 2xx: the ACK again is all it needs
        if call.state == "cancelling":  # answered as we cancelled: ACK, then hang up
            call.state = "confirmed"
            self._send_bye(call)
            self._end(call)
            self._emit(OutboundFailed(call.key, now, 487, "answered after cancel"))
            return
        call.state = "confirmed"
        answer = None
        if response.body:
            from .sip import _media_offer
            answer = _media_offer(response.body)
        negotiated = sdp.negotiate(answer) if answer else None
        call.negotiated = negotiated
        if negotiated is None:
            log.info("call %s: answered without a usable SDP answer; hanging up", call.key)
            self._send_bye(call)
            self._end(call)
            self._emit(OutboundFailed(call.key, now, 488, "no usable SDP in the answer"))
            return
        self._emit(OutboundAnswered(call.key, now, negotiated, (answer.address, answer.port)))

    def _send_ack(self, call: SipCall, response: SipMessage) -> None:
        """ACK for a 2xx: a new transaction along the route set to the remote target (RFC 3261 13.2.2.4)."""
        host, port = self.contact_host(), self.address[1]
        headers = [("Via", f"SIP/2.0/UDP {host}:{port};branch={sipwire.new_branch()};rport"),
                   ("Max-Forwards", "70")]
        headers += [("Route", route) for route in call.route_set]
        headers += [("From", call.local_party), ("To", response.get("To")), ("Call-ID", response.call_id),
                    ("CSeq", f"{response.cseq[0]} ACK")]
        data = sipwire.serialize(SipMessage(method="ACK", uri=call.remote_target, headers=headers))
        self._send(data, self._dialog_hop(call))

    def _ack_failure(self, call: SipCall, response: SipMessage) -> None:
        """ACK for a final error: same branch and Request-URI as the INVITE (RFC 3261 17.1.1.3)."""
        invite = call.invite
        headers = [("Via", invite.get_all("Via")[0]), ("Max-Forwards", "70"), ("From", invite.get("From")),
                   ("To", response.get("To")), ("Call-ID", invite.call_id), ("CSeq", f"{response.cseq[0]} ACK")]
        self._send(sipwire.serialize(SipMessage(method="ACK", uri=invite.uri, headers=headers)), call.source)

    def _dialog_hop(self, call: SipCall) -> tuple[str, int]:
        try:
            hop = SipUri.parse(NameAddr.parse(call.route_set[0]).uri if call.route_set else call.remote_target)
            if hop.host:
                return hop.hostport()
        except ValueError:
            pass
        return call.source
