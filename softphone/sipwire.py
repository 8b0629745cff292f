"""SIP messages on the wire (RFC 3261 section 7, 18, 20): a tolerant parser and the builders.

pyVoIP 1.6.8's parser drops compact or lower-case headers, `Name:value` without a space,
non-UTF-8 bytes, bodies without Content-Type and datagrams over 8 KB, and answers none of them
(field test 4.3 #23-#28).  This module reads what RFC 3261 allows, checks what it requires, and
raises one exception type, `SipParseError`, carrying the status code to answer with (400, 505)
when the message could be answered at all.  Header values are kept verbatim and in order, so
Via and Record-Route can be copied into responses byte for byte (section 8.2.6.2, 12.1.1).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"

COMPACT_FORMS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events", "x": "Session-Expires",
}
_SPECIAL_CASE = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "mime-version": "MIME-Version",
    "rack": "RAck", "rseq": "RSeq", "p-asserted-identity": "P-Asserted-Identity",
}
#: Headers whose value may be a comma-separated list of several header values (section 7.3.1).
_LIST_HEADERS = {"Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require", "Accept"}
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


class SipParseError(ValueError):
    """A datagram that is not an acceptable SIP message.

    `status` is the response to send (400, 505, ...) when the message can be answered, else None.
    `partial` holds whatever headers could be read, for building that response.
    """

    def __init__(self, reason: str, status: int | None = None, partial: "SipMessage | None" = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial


def canonical_name(name: str) -> str:
    name = name.strip()
    if len(name) == 1 and name.lower() in COMPACT_FORMS:
        return COMPACT_FORMS[name.lower()]
    lower = name.lower()
    if lower in _SPECIAL_CASE:
        return _SPECIAL_CASE[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    parts, depth, quoted, start = [], 0, False, 0
    escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        elif char == "," and not quoted and depth == 0:
            parts.append(value[start:index].strip())
            start = index + 1
    parts.append(value[start:].strip())
    return [part for part in parts if part]


@dataclass
class SipMessage:
    """A request or a response; header names canonical, values verbatim, order kept."""

    method: str | None = None  # requests
    uri: str | None = None
    status: int | None = None  # responses
    reason: str = ""
    version: str = SIP_VERSION
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.get("CSeq") or "").strip().partition(" ")
        return int(number), method.strip().upper()

    @property
    def top_via(self) -> "Via":
        return Via.parse(self.get_all("Via")[0])

    @property
    def from_tag(self) -> str | None:
        return NameAddr.parse(self.get("From") or "").params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return NameAddr.parse(self.get("To") or "").params.get("tag")

    def start_line(self) -> str:
        if self.is_request:
            return f"{self.method} {self.uri} {self.version}"
        return f"{self.version} {self.status} {self.reason}"


# --- parsing -----------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # RFC 3261 says UTF-8; old phones send Latin-1 display names
        return raw.decode("latin-1")


def parse(data: bytes) -> SipMessage:
    """Parse one SIP datagram.  Raises SipParseError."""
    if not data.strip(b"\r\n\x00 "):
        raise SipParseError("keep-alive")
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = data.partition(b"\n\n")
    lines = re.split(r"\r?\n", _decode(head))
    start = lines[0].strip()
    message = _parse_start_line(start)
    _parse_headers(message, lines[1:])
    if not separator:
        # No blank line: the header section was cut off.  Answerable only if it is a request
        # whose routing headers survived.
        raise SipParseError("message has no end of headers (truncated)", 400 if message.is_request else None, message)
    message.body = body
    _check(message)
    return message


def _parse_start_line(start: str) -> SipMessage:
    parts = start.split(" ", 2)
    if len(parts) >= 2 and parts[0].upper().startswith("SIP/"):
        version, code, reason = (parts + [""])[:3]  # the reason phrase may be empty
        if not code.isdigit() or len(code) != 3:
            raise SipParseError(f"bad status line {start[:80]!r}")
        return SipMessage(status=int(code), reason=reason, version=version.upper())
    if len(parts) == 3 and _TOKEN.match(parts[0]) and parts[2].upper().startswith("SIP/"):
        return SipMessage(method=parts[0].upper(), uri=parts[1], version=parts[2].upper())
    raise SipParseError(f"not a SIP start line: {start[:80]!r}")


def _parse_headers(message: SipMessage, lines: list[str]) -> None:
    unfolded: list[str] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and unfolded:  # folding (section 7.3.1)
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or not _TOKEN.match(name.strip()):
            continue  # a garbage line is skipped, the rest of the message may still be fine
        name = canonical_name(name)
        value = value.strip()
        if name in _LIST_HEADERS:
            message.headers.extend((name, item) for item in split_list(value))
        else:
            message.headers.append((name, value))


def _check(message: SipMessage) -> None:
    answerable = message.is_request and bool(message.get_all("Via"))
    status = 400 if answerable else None
    missing = [name for name in _REQUIRED if message.get(name) is None]
    if missing:
        raise SipParseError(f"missing {', '.join(missing)}", status, message)
    try:
        message.top_via
        number, method = message.cseq
    except (ValueError, IndexError) as error:
        raise SipParseError(f"bad Via or CSeq: {error}", status, message) from None
    if message.is_request and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match {message.method}", status, message)
    if not 0 <= number < 2**31:
        raise SipParseError("CSeq number out of range", status, message)
    length = message.get("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise SipParseError(f"bad Content-Length {length!r}", status, message)
        if len(message.body) < int(length):
            raise SipParseError(f"body shorter than Content-Length ({len(message.body)} < {length})", status, message)
        message.body = message.body[: int(length)]
    if message.body and message.get("Content-Type") is None:
        raise SipParseError("body without Content-Type", status, message)
    if message.version != SIP_VERSION:
        raise SipParseError(f"unsupported version {message.version}", 505 if answerable else None, message)


# --- header values -----------------------------------------------------------------------


def _params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, equals, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"') if equals else None
    return params


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        text = text.strip().strip("<>")
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips", "tel"):
            raise ValueError(f"not a SIP URI: {text[:80]!r}")
        rest, _, _headers = rest.partition("?")
        address, _, params = rest.partition(";")
        user, at, hostport = address.rpartition("@")
        if not at:
            user, hostport = None, address
        if hostport.startswith("["):  # IPv6 reference
            host, _, port_text = hostport[1:].partition("]")
            port_text = port_text.lstrip(":")
        else:
            host, _, port_text = hostport.partition(":")
        port = int(port_text) if port_text.isdigit() else None
        if scheme.lower() == "tel":
            user, host = address, ""
        return cls(scheme.lower(), user or None, host, port, _params(params))

    def hostport(self, default_port: int = 5060) -> tuple[str, int]:
        return self.host, self.port or default_port


@dataclass(frozen=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route: `"display" <uri>;params` or `uri;params`."""

    display: str
    uri: str
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> "NameAddr":
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri, _, params = rest.partition(">")
        else:
            display, (uri, _, params) = "", text.partition(";")
        return cls(display.strip().strip('"'), uri.strip(), _params(params))

    @property
    def user(self) -> str | None:
        try:
            return SipUri.parse(self.uri).user
        except ValueError:
            return None


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> "Via":
        protocol, _, rest = text.strip().partition(" ")
        if not protocol.upper().startswith("SIP/2.0/") or not rest.strip():
            raise ValueError(f"bad Via {text[:80]!r}")
        sent_by, _, params = rest.strip().partition(";")
        sent_by = sent_by.strip()
        if sent_by.startswith("["):
            host, _, port_text = sent_by[1:].partition("]")
            port_text = port_text.lstrip(":")
        else:
            host, _, port_text = sent_by.partition(":")
        return cls(protocol.split("/")[-1].upper(), host, int(port_text) if port_text.strip().isdigit() else None,
                   _params(params))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def response_address(message: SipMessage, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response to this request goes (RFC 3261 section 18.2.2, RFC 3581 rport)."""
    via = message.top_via
    host = via.params.get("received") or source[0]
    if "rport" in via.params:
        return source[0], source[1]
    if via.params.get("maddr"):
        host = via.params["maddr"] or host
    return host, via.port or 5060


def stamp_top_via(value: str, source: tuple[str, int]) -> str:
    """The top Via as the response must echo it: add received= and fill rport (RFC 3581)."""
    via = Via.parse(value)
    result = value
    if "rport" in via.params and not via.params["rport"]:
        result = re.sub(r";\s*rport(?=;|$|\s)", f";rport={source[1]}", result, count=1, flags=re.I)
    if via.host != source[0] and "received" not in via.params:
        result += f";received={source[0]}"
    return result


# --- building ----------------------------------------------------------------------------


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


def serialize(message: SipMessage) -> bytes:
    lines = [message.start_line()]
    lines += [f"{name}: {value}" for name, value in message.headers if name != "Content-Length"]
    lines.append(f"Content-Length: {len(message.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + message.body


REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    423: "Interval Too Brief", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    513: "Message Too Large",
}


def build_response(
    request: SipMessage,
    status: int,
    source: tuple[str, int],
    *,
    reason: str | None = None,
    to_tag: str | None = None,
    record_route: bool = False,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipMessage:
    """A response that copies Via (verbatim, top one stamped), From, To (+ our tag), Call-ID, CSeq.

    `record_route` copies the Record-Route set, as 1xx/2xx to a dialog-creating INVITE must
    (section 12.1.1; pyVoIP 1.6.8 never does, field test C6).
    """
    vias = request.get_all("Via")
    out: list[tuple[str, str]] = []
    if vias:
        out.append(("Via", stamp_top_via(vias[0], source)))
        out += [("Via", via) for via in vias[1:]]
    if record_route:
        out += [("Record-Route", value) for value in request.get_all("Record-Route")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is None:
            continue
        if name == "To" and to_tag and status != 100 and "tag" not in NameAddr.parse(value).params:
            value = f"{value};tag={to_tag}"
        out.append((name, value))
    out += headers or []
    if body:
        out.append(("Content-Type", content_type or "application/sdp"))
    return SipMessage(status=status, reason=reason or REASONS.get(status, ""), headers=out, body=body)
