"""Dialogs and transactions as the SIP adapter keeps them: plain state, no I/O.

`SipCall` is one call, incoming or outgoing: its INVITE transaction (last response, retransmission
timer, the ACK awaited) and then its dialog (tags, route set, remote target, CSeq, SDP version).
`ClientTransaction` is a non-INVITE request we sent (BYE), retransmitted until answered.
"""
from __future__ import annotations

import random
from typing import Callable
from dataclasses import dataclass, field

from .sdp import MediaOffer, Negotiated
from .sipwire import SipMessage

T1, T2, TIMER_64T1 = 0.5, 4.0, 32.0  # RFC 3261 17.1.1.1


@dataclass
class SipCall:
    key: str
    invite: SipMessage
    source: tuple[str, int]
    reply_to: tuple[str, int]
    local_tag: str
    route_set: list[str]
    remote_target: str
    offer: MediaOffer | None
    negotiated: Negotiated | None
    state: str = "ringing"  # ringing -> answering -> confirmed -> ended
    last_response: bytes | None = None
    retransmit_at: float | None = None
    retransmit_every: float = T1
    final_sent_at: float = 0.0
    local_cseq: int = 0
    session_id: int = field(default_factory=lambda: random.randint(1, 2**31))
    sdp_version: int = 1
    media: tuple[str, int] | None = None  # our (address, port)
    pending_ack_cseq: int | None = None
    forget_at: float | None = None
    direction: str = "in"
    local_party: str = ""  # our From/To header value with our tag, for requests we send in the dialog
    remote_party: str = ""  # theirs, with their tag
    auth_sent: bool = False  # an outgoing INVITE answered a challenge once already

    @property
    def branch(self) -> str | None:
        return self.invite.top_via.branch

    @property
    def cseq(self) -> int:
        return self.invite.cseq[0]


@dataclass
class ClientTransaction:
    """A non-INVITE client transaction we started (BYE): retransmitted until answered (Timer E/F)."""

    data: bytes
    to: tuple[str, int]
    started: float
    next_at: float
    interval: float = T1
    on_done: Callable[[int | None], None] | None = None


