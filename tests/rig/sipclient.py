"""A raw UDP SIP peer for crafted messages and exact wire assertions.

``SipPeer`` binds one UDP socket (given or free 127.0.0.x address), sends bytes, and keeps every
datagram it receives with its arrival time and source address, so a test can assert *where* a
response went (Via / rport), *what* exactly went out, and that Record-Route was copied.

Builders (``invite``, ``options``, ``cancel``, ``ack``, ``bye``, ``bye_unknown``, ``response``)
return ``SipMessage`` objects; ``bytes(msg)`` is the wire form with a correct Content-Length.
``parse()`` is a minimal parser (start line, headers as an ordered multi-dict, body); it raises
``SipParseError`` on anything it cannot split.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tests.rig.ports import free_endpoint

COMPACT = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding", "o": "Event",
}

_counter = itertools.count(1)


class SipParseError(ValueError):
    """The datagram is not a SIP message this parser can split."""


class Headers:
    """Ordered multi-dict of SIP headers; lookups are case-insensitive and know compact forms."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    @staticmethod
    def _key(name: str) -> str:
        n = name.strip()
        return COMPACT.get(n.lower(), n).lower() if len(n) == 1 else n.lower()

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` (None/default if absent)."""
        k = self._key(name)
        for n, v in self._items:
            if self._key(n) == k:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """All values of ``name`` in wire order; comma-joined values are split for Via/Route/RR."""
        k = self._key(name)
        out: list[str] = []
        for n, v in self._items:
            if self._key(n) == k:
                if k in ("via", "route", "record-route"):
                    out.extend(_split_commas(v))
                else:
                    out.append(v)
        return out

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace all ``name`` lines by one (kept at the position of the first)."""
        k = self._key(name)
        for i, (n, _) in enumerate(self._items):
            if self._key(n) == k:
                self._items[i] = (name, value)
                self._items = [it for j, it in enumerate(self._items) if j <= i or self._key(it[0]) != k]
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        """Drop every ``name`` line."""
        k = self._key(name)
        self._items = [it for it in self._items if self._key(it[0]) != k]

    def items(self) -> list[tuple[str, str]]:
        """All (name, value) pairs in wire order, names as they were written."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _split_commas(value: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            depth += 1
        elif not quote and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


@dataclass
class SipMessage:
    """A SIP request or response.  ``bytes(msg)`` renders it (Content-Length recomputed)."""

    start_line: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # -- start line ---------------------------------------------------------------------------
    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/")

    @property
    def is_request(self) -> bool:
        return not self.is_response

    @property
    def method(self) -> str | None:
        """Request method, or for a response the method of its CSeq."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0]
        cseq = self.cseq
        return cseq[1] if cseq else None

    @property
    def uri(self) -> str | None:
        """Request-URI (None for responses)."""
        return self.start_line.split(" ")[1] if self.is_request else None

    @property
    def status(self) -> int | None:
        """Response status code (None for requests)."""
        return int(self.start_line.split(" ")[1]) if self.is_response else None

    @property
    def reason(self) -> str | None:
        return self.start_line.split(" ", 2)[2] if self.is_response and self.start_line.count(" ") >= 2 else None

    # -- common headers -----------------------------------------------------------------------
    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        v = self.headers.get("CSeq")
        if not v:
            return None
        num, _, meth = v.strip().partition(" ")
        return int(num), meth.strip()

    @property
    def vias(self) -> list[str]:
        return self.headers.get_all("Via")

    @property
    def top_branch(self) -> str | None:
        return header_param(self.vias[0], "branch") if self.vias else None

    @property
    def from_tag(self) -> str | None:
        v = self.headers.get("From")
        return header_param(v, "tag") if v else None

    @property
    def to_tag(self) -> str | None:
        v = self.headers.get("To")
        return header_param(v, "tag") if v else None

    @property
    def contact_uri(self) -> str | None:
        v = self.headers.get("Contact")
        return name_addr_uri(v) if v else None

    @property
    def record_route(self) -> list[str]:
        return self.headers.get_all("Record-Route")

    def sdp(self) -> "Sdp | None":
        """The body parsed as SDP, if the Content-Type says so (or there is a ``v=0`` body)."""
        ctype = (self.headers.get("Content-Type") or "").lower()
        if not self.body or ("sdp" not in ctype and not self.body.startswith(b"v=")):
            return None
        return Sdp.parse(self.body.decode("utf-8", "replace"))

    # -- rendering ----------------------------------------------------------------------------
    def to_bytes(self, *, content_length: bool = True) -> bytes:
        """Wire form; ``content_length=False`` keeps whatever Content-Length the headers have."""
        hdrs = Headers(self.headers.items())
        if content_length:
            hdrs.set("Content-Length", str(len(self.body)))
        head = self.start_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in hdrs) + "\r\n"
        return head.encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def text(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")


def parse(data: bytes) -> SipMessage:
    """Parse one datagram; raises SipParseError when there is no start line / header block."""
    if not data or not data.strip():
        raise SipParseError("empty datagram")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = re.split(r"\r?\n", head.decode("utf-8", "replace"))
    start = lines[0].strip()
    if not (start.startswith("SIP/") or re.match(r"^[A-Za-z]+ \S+ SIP/\d\.\d$", start)):
        raise SipParseError(f"not a SIP start line: {start[:80]!r}")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and items:  # folded continuation
            n, v = items[-1]
            items[-1] = (n, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without colon: {line[:80]!r}")
        items.append((name.strip(), value.strip()))
    hdrs = Headers(items)
    clen = hdrs.get("Content-Length")
    if clen is not None and clen.strip().isdigit():
        body = body[: int(clen)]
    return SipMessage(start, hdrs, body)


def header_param(value: str, name: str) -> str | None:
    """A ``;name=value`` parameter of a header value (outside the <...> URI), None if absent."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value
    for part in tail.split(";")[1:]:
        k, _, v = part.partition("=")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def name_addr_uri(value: str) -> str:
    """The URI of a name-addr (``"x" <sip:a@b>;tag=1`` -> ``sip:a@b``) or of a bare addr-spec."""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1)
    return value.split(";", 1)[0].strip()


def uri_hostport(uri: str) -> tuple[str, int]:
    """(host, port) of a SIP URI, port 5060 if absent."""
    m = re.match(r"^sips?:(?:[^@;>]*@)?([^:;>?]+)(?::(\d+))?", uri.strip())
    if not m:
        raise SipParseError(f"not a SIP URI: {uri!r}")
    return m.group(1), int(m.group(2) or 5060)


# ------------------------------------------------------------------------------------------------
# SDP
# ------------------------------------------------------------------------------------------------
CODECS: dict[str, tuple[int, str]] = {
    "PCMU": (0, "PCMU/8000"),
    "PCMA": (8, "PCMA/8000"),
    "G729": (18, "G729/8000"),
    "opus": (96, "opus/48000/2"),
    "telephone-event": (101, "telephone-event/8000"),
}


@dataclass
class Sdp:
    """Just enough SDP: session/media connection address, audio port, payload types, direction."""

    text: str
    session_c: str | None
    media_c: str | None
    audio_port: int | None
    payload_types: list[int]
    rtpmap: dict[int, str]
    direction: str | None

    @property
    def connection(self) -> str | None:
        """The address media goes to (media-level c= wins over session-level)."""
        return self.media_c or self.session_c

    @classmethod
    def parse(cls, text: str) -> "Sdp":
        session_c = media_c = None
        port = None
        pts: list[int] = []
        rtpmap: dict[int, str] = {}
        direction = None
        in_audio = False
        for line in re.split(r"\r?\n", text):
            if line.startswith("m="):
                in_audio = line.startswith("m=audio")
                if in_audio:
                    f = line[2:].split()
                    port = int(f[1])
                    pts = [int(x) for x in f[3:] if x.isdigit()]
            elif line.startswith("c="):
                addr = line.split()[-1]
                if port is None and not in_audio:
                    session_c = addr
                elif in_audio:
                    media_c = addr
            elif line.startswith("a=rtpmap:") and in_audio:
                pt, _, enc = line[len("a=rtpmap:"):].partition(" ")
                if pt.isdigit():
                    rtpmap[int(pt)] = enc.strip()
            elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
                direction = line[2:]
        return cls(text, session_c, media_c, port, pts, rtpmap, direction)


def sdp_offer(
    ip: str,
    port: int,
    codecs: Sequence[str] = ("PCMU",),
    *,
    direction: str = "sendrecv",
    session_c: bool = True,
    media_c: bool = False,
    telephone_event: bool = True,
    session_id: int | None = None,
) -> str:
    """An audio SDP offer (CRLF lines).  ``session_c``/``media_c`` choose where ``c=`` goes."""
    sid = session_id if session_id is not None else int(time.time())
    pts = [CODECS[c][0] for c in codecs]
    if telephone_event:
        pts.append(101)
    lines = ["v=0", f"o=rig {sid} {sid} IN IP4 {ip}", "s=-"]
    if session_c:
        lines.append(f"c=IN IP4 {ip}")
    lines.append("t=0 0")
    lines.append(f"m=audio {port} RTP/AVP " + " ".join(str(p) for p in pts))
    if media_c:
        lines.append(f"c=IN IP4 {ip}")
    for c in codecs:
        pt, enc = CODECS[c]
        lines.append(f"a=rtpmap:{pt} {enc}")
        if c == "G729":
            lines.append("a=fmtp:18 annexb=no")
    if telephone_event:
        lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------
def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie prefix)."""
    return f"z9hG4bK-rig-{uuid.uuid4().hex[:16]}"


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def new_call_id(host: str = "rig") -> str:
    return f"{uuid.uuid4().hex[:20]}-{os.getpid()}-{next(_counter)}@{host}"


def _via(local: tuple[str, int], branch: str, rport: bool) -> str:
    return f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch}" + (";rport" if rport else "")


def invite(
    target_uri: str,
    local: tuple[str, int],
    *,
    sdp: str | None = "",
    codecs: Sequence[str] = ("PCMU",),
    media: tuple[str, int] | None = None,
    to_uri: str | None = None,
    from_uri: str | None = None,
    call_id: str | None = None,
    branch: str | None = None,
    from_tag: str | None = None,
    cseq: int = 1,
    rport: bool = True,
    upper_vias: Sequence[str] = (),
    record_route: Sequence[str] = (),
    route: Sequence[str] = (),
    contact: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> SipMessage:
    """An INVITE from ``local`` to ``target_uri``.

    ``sdp=""`` (default) builds an offer with ``codecs`` on ``media`` (default: local host, port
    local+2); a string is used verbatim; ``None`` sends no body (delayed offer).
    ``upper_vias``/``record_route`` make it look as if a proxy had forwarded it: those Vias go
    above ours and the Record-Route lines are added as given.
    """
    h = Headers()
    for v in upper_vias:
        h.add("Via", v)
    h.add("Via", _via(local, branch or new_branch(), rport))
    h.add("Max-Forwards", "70")
    for rr in record_route:
        h.add("Record-Route", rr)
    for r in route:
        h.add("Route", r)
    h.add("From", f"<{from_uri or f'sip:rig@{local[0]}:{local[1]}'}>;tag={from_tag or new_tag()}")
    h.add("To", f"<{to_uri or target_uri}>")
    h.add("Call-ID", call_id or new_call_id(local[0]))
    h.add("CSeq", f"{cseq} INVITE")
    h.add("Contact", contact or f"<sip:rig@{local[0]}:{local[1]}>")
    h.add("User-Agent", "frontdesk-rig")
    for n, v in extra_headers:
        h.add(n, v)
    body = b""
    if sdp is not None:
        if sdp == "":
            mhost, mport = media or (local[0], local[1] + 2)
            sdp = sdp_offer(mhost, mport, codecs)
        h.add("Content-Type", "application/sdp")
        body = sdp.encode()
    return SipMessage(f"INVITE {target_uri} SIP/2.0", h, body)


def options(
    target_uri: str,
    local: tuple[str, int],
    *,
    call_id: str | None = None,
    branch: str | None = None,
    rport: bool = True,
    to_uri: str | None = None,
) -> SipMessage:
    """An out-of-dialog OPTIONS (``target_uri`` ``sip:host:port`` probes a proxy itself)."""
    h = Headers()
    h.add("Via", _via(local, branch or new_branch(), rport))
    h.add("Max-Forwards", "70")
    h.add("From", f"<sip:rig@{local[0]}:{local[1]}>;tag={new_tag()}")
    h.add("To", f"<{to_uri or target_uri}>")
    h.add("Call-ID", call_id or new_call_id(local[0]))
    h.add("CSeq", "1 OPTIONS")
    h.add("Contact", f"<sip:rig@{local[0]}:{local[1]}>")
    h.add("Accept", "application/sdp")
    return SipMessage(f"OPTIONS {target_uri} SIP/2.0", h, b"")


def cancel(inv: SipMessage) -> SipMessage:
    """The CANCEL matching ``inv``: same R-URI, top Via (branch), From, To, Call-ID, CSeq number, Route."""
    if not inv.is_request or inv.method != "INVITE":
        raise ValueError("cancel() needs the INVITE")
    h = Headers()
    for v in inv.vias:  # the whole Via stack of the INVITE (RFC 3261 9.1)
        h.add("Via", v)
    h.add("Max-Forwards", "70")
    for r in inv.headers.get_all("Route"):
        h.add("Route", r)
    h.add("From", inv.headers.get("From") or "")
    h.add("To", inv.headers.get("To") or "")
    h.add("Call-ID", inv.call_id or "")
    h.add("CSeq", f"{inv.cseq[0] if inv.cseq else 1} CANCEL")
    return SipMessage(f"CANCEL {inv.uri} SIP/2.0", h, b"")


def _our_via(inv: SipMessage) -> str:
    # the UAC's own Via is the bottom one (upper_vias simulate a proxy above it)
    return inv.vias[-1]


def ack(inv: SipMessage, resp: SipMessage, *, sdp: str | None = None) -> SipMessage:
    """ACK for ``resp`` to ``inv``.

    Non-2xx: hop-by-hop, same branch and R-URI as the INVITE, To from the response.
    2xx: new transaction to the remote target (Contact) with the Route set from Record-Route
    (reversed); ``sdp`` puts an answer in it (delayed offer).
    """
    h = Headers()
    status = resp.status or 0
    if 200 <= status < 300:
        via = _our_via(inv)
        branch = header_param(via, "branch") or ""
        h.add("Via", via.replace(f"branch={branch}", f"branch={new_branch()}"))
        uri = resp.contact_uri or inv.uri or ""
        routes = list(reversed(resp.record_route))
    else:
        for v in inv.vias:
            h.add("Via", v)
        uri = inv.uri or ""
        routes = inv.headers.get_all("Route")
    h.add("Max-Forwards", "70")
    for r in routes:
        h.add("Route", r)
    h.add("From", inv.headers.get("From") or "")
    h.add("To", resp.headers.get("To") or "")
    h.add("Call-ID", inv.call_id or "")
    h.add("CSeq", f"{inv.cseq[0] if inv.cseq else 1} ACK")
    body = b""
    if sdp is not None:
        h.add("Content-Type", "application/sdp")
        body = sdp.encode()
    return SipMessage(f"ACK {uri} SIP/2.0", h, body)


def bye(inv: SipMessage, resp: SipMessage, *, cseq: int | None = None) -> SipMessage:
    """In-dialog BYE from the caller of ``inv`` after the 2xx ``resp`` (remote target + Route set)."""
    via = _our_via(inv)
    branch = header_param(via, "branch") or ""
    h = Headers()
    h.add("Via", via.replace(f"branch={branch}", f"branch={new_branch()}"))
    h.add("Max-Forwards", "70")
    for r in reversed(resp.record_route):
        h.add("Route", r)
    h.add("From", inv.headers.get("From") or "")
    h.add("To", resp.headers.get("To") or "")
    h.add("Call-ID", inv.call_id or "")
    n = cseq if cseq is not None else (inv.cseq[0] + 1 if inv.cseq else 2)
    h.add("CSeq", f"{n} BYE")
    return SipMessage(f"BYE {resp.contact_uri or inv.uri} SIP/2.0", h, b"")


def bye_unknown(target_uri: str, local: tuple[str, int], *, rport: bool = True) -> SipMessage:
    """A BYE for a dialog nobody has (fresh Call-ID and tags): a UAS must answer 481."""
    h = Headers()
    h.add("Via", _via(local, new_branch(), rport))
    h.add("Max-Forwards", "70")
    h.add("From", f"<sip:rig@{local[0]}:{local[1]}>;tag={new_tag()}")
    h.add("To", f"<{target_uri}>;tag={new_tag()}")
    h.add("Call-ID", new_call_id(local[0]))
    h.add("CSeq", "2 BYE")
    return SipMessage(f"BYE {target_uri} SIP/2.0", h, b"")


def response(
    req: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    contact: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipMessage:
    """A response to ``req`` (Via, Record-Route, From, To, Call-ID, CSeq copied; To-tag added)."""
    h = Headers()
    for v in req.headers.get_all("Via"):
        h.add("Via", v)
    for rr in req.record_route:
        h.add("Record-Route", rr)
    h.add("From", req.headers.get("From") or "")
    to = req.headers.get("To") or ""
    if to_tag and header_param(to, "tag") is None:
        to = f"{to};tag={to_tag}"
    h.add("To", to)
    h.add("Call-ID", req.call_id or "")
    h.add("CSeq", req.headers.get("CSeq") or "")
    if contact:
        h.add("Contact", contact)
    for n, v in headers:
        h.add(n, v)
    return SipMessage(f"SIP/2.0 {status} {reason}", h, body)


# ------------------------------------------------------------------------------------------------
# the peer
# ------------------------------------------------------------------------------------------------
@dataclass
class Received:
    """One datagram as it arrived: monotonic time, source address, raw bytes, parsed (or None)."""

    t: float
    addr: tuple[str, int]
    data: bytes
    msg: SipMessage | None


class SipPeer:
    """A UDP socket that speaks raw SIP.  Context manager; ``close()`` is idempotent.

    ``received`` holds every datagram in arrival order (``expect`` does not consume them).
    """

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        if port is None:
            ep = free_endpoint(host)
            host, port = ep.host, ep.port
        assert host is not None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.addr: tuple[str, int] = (host, port)
        self.received: list[Received] = []
        self.sent: list[tuple[float, tuple[str, int], bytes]] = []
        self._cursor = 0

    @property
    def host(self) -> str:
        return self.addr[0]

    @property
    def port(self) -> int:
        return self.addr[1]

    def send(self, data: bytes | str | SipMessage, to: tuple[str, int]) -> bytes:
        """Send one datagram to ``to``; returns the exact bytes sent."""
        raw = bytes(data) if isinstance(data, SipMessage) else data.encode() if isinstance(data, str) else data
        self.sock.sendto(raw, to)
        self.sent.append((time.monotonic(), to, raw))
        return raw

    def recv(self, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
        """Next datagram within ``timeout`` seconds (also appended to ``received``), else None."""
        self.sock.settimeout(max(timeout, 0.0001))
        try:
            data, addr = self.sock.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        try:
            msg: SipMessage | None = parse(data)
        except SipParseError:
            msg = None
        self.received.append(Received(time.monotonic(), addr, data, msg))
        return data, addr

    def expect(self, pred: Callable[[SipMessage], bool], timeout: float) -> Received | None:
        """First datagram (already received after the last ``expect`` hit, or arriving within
        ``timeout``) whose parsed message satisfies ``pred``; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.received):
                r = self.received[self._cursor]
                self._cursor += 1
                if r.msg is not None and pred(r.msg):
                    return r
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.recv(left)

    def expect_response(self, req: SipMessage, timeout: float, *, final: bool = True) -> Received | None:
        """First response to ``req`` (same Call-ID and CSeq); with ``final`` skip 1xx."""
        cid, cseq = req.call_id, req.cseq

        def match(m: SipMessage) -> bool:
            return m.is_response and m.call_id == cid and m.cseq == cseq and (not final or (m.status or 0) >= 200)

        return self.expect(match, timeout)

    def drain(self, duration: float) -> list[Received]:
        """Receive for ``duration`` seconds; returns what arrived in that time."""
        start = len(self.received)
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self.recv(left)
        return self.received[start:]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "SipPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_options(target: tuple[str, int], local_host: str, timeout: float = 0.5) -> int | None:
    """Send one OPTIONS to ``sip:host:port`` from a throw-away socket; the status code or None."""
    with SipPeer(local_host) as peer:
        req = options(f"sip:{target[0]}:{target[1]}", peer.addr)
        peer.send(req, target)
        got = peer.expect_response(req, timeout)
        return got.msg.status if got and got.msg else None
