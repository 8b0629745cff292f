"""SDP offer/answer for one G.711 audio stream (RFC 3264, RFC 4566).

The adapter turns pyVoIP's parsed SDP into a `MediaOffer`; this module decides the answer.
pyVoIP 1.6.8 answers an offer without PCMU/PCMA with an empty m= line and then crashes its RTP
thread (M11), and answers hold (sendonly) with sendrecv (M15); here an offer without a common
codec yields no answer (the caller gets 488) and the direction is answered per RFC 3264 6.1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .rtp import CODEC_OF_PT

_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
DTMF_PT = 101


@dataclass(frozen=True)
class MediaOffer:
    """The audio part of a peer's SDP."""

    address: str
    port: int
    formats: tuple[int, ...]
    rtpmap: dict[int, str] = field(default_factory=dict)  # 101 -> "telephone-event/8000"
    direction: str = "sendrecv"

    @property
    def on_hold(self) -> bool:
        """The peer does not want our audio (RFC 3264 8.4; c=0.0.0.0 is the RFC 2543 form)."""
        return self.direction in ("sendonly", "inactive") or self.address == "0.0.0.0" or self.port == 0


@dataclass(frozen=True)
class Negotiated:
    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    direction: str  # our direction in the answer


def codec_of(pt: int, rtpmap: dict[int, str]) -> str | None:
    name = rtpmap.get(pt, "")
    if name:
        encoding, _, rate = name.partition("/")
        encoding = encoding.upper()
        if encoding in ("PCMU", "PCMA") and rate.split("/")[0] in ("8000", ""):
            return encoding
        return None
    return CODEC_OF_PT.get(pt)


def negotiate(offer: MediaOffer) -> Negotiated | None:
    """The first G.711 format in the offerer's order, and telephone-event if offered."""
    chosen = next(((pt, codec) for pt in offer.formats if (codec := codec_of(pt, offer.rtpmap))), None)
    if chosen is None:
        return None
    dtmf = next((pt for pt in offer.formats if offer.rtpmap.get(pt, "").lower().startswith("telephone-event/8000")),
                None)
    direction = "inactive" if offer.port == 0 else _ANSWER_DIRECTION.get(offer.direction, "sendrecv")
    if offer.address == "0.0.0.0" and direction == "sendrecv":
        direction = "recvonly"
    return Negotiated(chosen[1], chosen[0], dtmf, direction)


def render(
    *,
    address: str,
    port: int,
    session_id: int,
    version: int,
    formats: list[tuple[int, str]],
    dtmf_payload_type: int | None,
    direction: str = "sendrecv",
) -> bytes:
    """SDP text for one audio stream: `formats` is [(payload type, "PCMU/8000"), ...]."""
    pts = [pt for pt, _ in formats] + ([dtmf_payload_type] if dtmf_payload_type is not None else [])
    lines = [
        "v=0",
        f"o=frontdesk {session_id} {version} IN IP4 {address}",
        "s=frontdesk",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}",
    ]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in formats]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def answer(offer_result: Negotiated, *, address: str, port: int, session_id: int, version: int) -> bytes:
    return render(address=address, port=port, session_id=session_id, version=version,
                  formats=[(offer_result.payload_type, f"{offer_result.codec}/8000")],
                  dtmf_payload_type=offer_result.dtmf_payload_type, direction=offer_result.direction)


def offer(*, address: str, port: int, session_id: int, version: int) -> bytes:
    """Our offer, for an INVITE that came without SDP (delayed offer) and for outgoing calls."""
    return render(address=address, port=port, session_id=session_id, version=version,
                  formats=[(0, "PCMU/8000"), (8, "PCMA/8000")], dtmf_payload_type=DTMF_PT)
