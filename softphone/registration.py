"""Registration with a PBX or registrar (RFC 3261 section 10), as a sans-I/O state machine.

The adapter feeds it responses and timer ticks with the current time and sends what it returns.
What pyVoIP 1.6.8 gets wrong, and this does not (field test 4.4, S16-S18):
- it never blocks and never holds the receive path: an INVITE arriving while a REGISTER is
  pending is just another message (pyVoIP consumed INVITEs as REGISTER responses);
- it refreshes at 0.8 x the expiry the registrar *granted* (pyVoIP ignored it: 404 after 60 s);
- a registrar that is down or refuses is retried with back-off (2 s doubling to 60 s) forever;
  the phone never stops (pyVoIP went FAILED after 120 s, or died for good mid-run);
- Call-ID and instance id are stable for one boot and the instance across restarts
  (pyVoIP reused sha256("1") everywhere and changed +sip.instance every start).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from . import sipwire
from .digest import Challenge, authorization
from .sipwire import NameAddr, SipMessage

T1, T2, TIMEOUT = 0.5, 4.0, 32.0
BACKOFF_FIRST, BACKOFF_MAX = 2.0, 60.0


@dataclass(frozen=True)
class Send:
    data: bytes
    to: tuple[str, int]


@dataclass(frozen=True)
class StateChanged:
    state: str  # "registered" | "retrying" | "unregistered"
    expires: int | None = None
    reason: str = ""


@dataclass
class RegistrationSettings:
    user: str
    password: str
    registrar: tuple[str, int]
    local: tuple[str, int]  # our SIP address as the registrar should reach it
    domain: str = ""
    expires: int = 300
    instance: str = ""  # urn:uuid value, stable across restarts
    user_agent: str = "frontdesk"

    def __post_init__(self) -> None:
        self.domain = self.domain or self.registrar[0]


@dataclass
class Registration:
    settings: RegistrationSettings
    call_id: str = field(default_factory=lambda: secrets.token_hex(12) + "@frontdesk")
    state: str = "unregistered"
    granted: int | None = None
    next_timer: float | None = None
    _cseq: int = 0
    _tag: str = field(default_factory=sipwire.new_tag)
    _pending: bytes | None = None  # the REGISTER waiting for a final response
    _sent_at: float = 0.0
    _interval: float = T1
    _backoff: float = BACKOFF_FIRST
    _auth_tries: int = 0
    _expires_asked: int = 0
    _stopping: bool = False

    # --- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> list:
        return self._send_register(now, self.settings.expires)

    def stop(self, now: float) -> list:
        """De-register (Expires: 0); the adapter waits at most a couple of seconds for the answer."""
        self._stopping = True
        if self.state != "registered":
            self.next_timer = None
            return []
        return self._send_register(now, 0)

    def on_timer(self, now: float) -> list:
        if self.next_timer is None or now < self.next_timer:
            return []
        if self._pending is not None:  # Timer E: retransmit, Timer F: give up
            if now - self._sent_at >= TIMEOUT:
                self._pending = None
                return self._fail(now, "registrar did not answer")
            self._interval = min(self._interval * 2, T2)
            self.next_timer = now + self._interval
            return [Send(self._pending, self.settings.registrar)]
        if self._stopping:
            self.next_timer = None
            return []
        return self._send_register(now, self.settings.expires)  # refresh or retry

    def on_response(self, response: SipMessage, now: float) -> list:
        """A response with our Call-ID (the adapter routes by Call-ID)."""
        number, method = response.cseq
        if method != "REGISTER" or number != self._cseq or self._pending is None or response.status < 200:
            return []
        self._pending = None
        status = response.status
        if status in (401, 407):
            header = response.get("WWW-Authenticate" if status == 401 else "Proxy-Authenticate") or ""
            try:
                challenge = Challenge.parse(header)
            except ValueError as error:
                return self._fail(now, f"{status} with unusable challenge: {error}")
            if not challenge.supported:
                return self._fail(now, f"unsupported digest {challenge.algorithm}/{','.join(challenge.qop)}")
            if self._auth_tries >= 1 and not challenge.stale:
                return self._fail(now, "credentials rejected (check user and password)", long=True)
            self._auth_tries += 1
            return self._send_register(now, self._expires_asked, challenge, status)
        self._auth_tries = 0
        if status == 423 and response.get("Min-Expires", "").isdigit():
            self.settings.expires = int(response.get("Min-Expires"))
            return self._send_register(now, self.settings.expires)
        if 200 <= status < 300:
            return self._registered(response, now)
        return self._fail(now, f"{status} {response.reason}")

    # --- internals ------------------------------------------------------------------------

    def _registered(self, response: SipMessage, now: float) -> list:
        if self._expires_asked == 0:
            self.state, self.granted, self.next_timer = "unregistered", None, None
            return [StateChanged("unregistered", None, "de-registered")]
        granted = self._granted_expiry(response)
        self.granted = granted
        self._backoff = BACKOFF_FIRST
        self.next_timer = now + max(1.0, 0.8 * granted)
        changed = self.state != "registered"
        self.state = "registered"
        return [StateChanged("registered", granted)] if changed else []

    def _granted_expiry(self, response: SipMessage) -> int:
        ours = f"{self.settings.local[0]}:{self.settings.local[1]}"
        for contact in response.get_all("Contact"):
            parsed = NameAddr.parse(contact)
            expires = parsed.params.get("expires")
            if ours in parsed.uri and expires and expires.isdigit():
                return int(expires)
        header = response.get("Expires")
        if header and header.strip().isdigit():
            return int(header)
        return self._expires_asked

    def _fail(self, now: float, reason: str, long: bool = False) -> list:
        if self._stopping:
            self.state, self.next_timer = "unregistered", None
            return [StateChanged("unregistered", None, reason)]
        delay = BACKOFF_MAX if long else self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._auth_tries = 0
        self.next_timer = now + delay
        self.state = "retrying"
        return [StateChanged("retrying", None, f"{reason}; retry in {delay:.0f} s")]

    def _send_register(self, now: float, expires: int, challenge: Challenge | None = None,
                       challenge_status: int = 401) -> list:
        data = self._build(expires, challenge, challenge_status)
        self._pending, self._sent_at, self._interval = data, now, T1
        self._expires_asked = expires
        self.next_timer = now + T1
        return [Send(data, self.settings.registrar)]

    def _build(self, expires: int, challenge: Challenge | None, challenge_status: int) -> bytes:
        s = self.settings
        self._cseq += 1
        port = "" if s.registrar[1] == 5060 else f":{s.registrar[1]}"
        uri = f"sip:{s.domain}{port}"
        aor = f"<sip:{s.user}@{s.domain}>"
        contact = f"<sip:{s.user}@{s.local[0]}:{s.local[1]};transport=udp>"
        if s.instance:
            contact += f';+sip.instance="<urn:uuid:{s.instance}>"'
        headers = [
            ("Via", f"SIP/2.0/UDP {s.local[0]}:{s.local[1]};branch={sipwire.new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{aor};tag={self._tag}"),
            ("To", aor),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", contact),
            ("Expires", str(expires)),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
            ("User-Agent", s.user_agent),
        ]
        if challenge is not None:
            name = "Authorization" if challenge_status == 401 else "Proxy-Authorization"
            headers.append((name, authorization(challenge, method="REGISTER", uri=uri,
                                                username=s.user, password=s.password)))
        return sipwire.serialize(SipMessage(method="REGISTER", uri=uri, headers=headers))
