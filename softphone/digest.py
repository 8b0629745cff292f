"""HTTP digest for SIP (RFC 3261 22.4, RFC 2617, RFC 7616): MD5 and SHA-256, with and without qop.

pyVoIP 1.6.8 computes MD5 without qop and with a digest-uri that is not the Request-URI
(anchors.md B.1 note 4); registrars that offer qop=auth reject it.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')
_HASHES = {"MD5": hashlib.md5, "MD5-SESS": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-256-SESS": hashlib.sha256}


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header: str) -> "Challenge":
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            raise ValueError(f"not a digest challenge: {header[:60]!r}")
        params = {key.lower(): value.strip('"') for key, value in _PARAM.findall(rest)}
        if "realm" not in params or "nonce" not in params:
            raise ValueError("digest challenge without realm or nonce")
        qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
        return cls(params["realm"], params["nonce"], params.get("algorithm", "MD5").upper(), qop,
                   params.get("opaque"), params.get("stale", "").lower() == "true")

    @property
    def supported(self) -> bool:
        return self.algorithm in _HASHES and (not self.qop or "auth" in self.qop)


def authorization(challenge: Challenge, *, method: str, uri: str, username: str, password: str,
                  nonce_count: int = 1, cnonce: str | None = None) -> str:
    """The Authorization (or Proxy-Authorization) header value answering `challenge`."""
    hash_ = _HASHES[challenge.algorithm]

    def h(text: str) -> str:
        return hash_(text.encode("utf-8")).hexdigest()

    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if challenge.algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{challenge.realm}"', f'nonce="{challenge.nonce}"', f'uri="{uri}"']
    if "auth" in challenge.qop:
        nc = f"{nonce_count:08x}"
        response = h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{h(f"{ha1}:{challenge.nonce}:{ha2}")}"')
    fields.append(f"algorithm={challenge.algorithm}")
    if challenge.opaque is not None:
        fields.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(fields)
