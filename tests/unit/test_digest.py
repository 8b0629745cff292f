"""Digest authentication against published vectors (RFC 2617 3.5, RFC 7616 3.9.1)."""
import pytest

from softphone.digest import Challenge, authorization


def fields(header):
    import re
    return dict((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header))


def test_rfc2617_example_with_qop_auth():
    challenge = Challenge.parse('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    header = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                           password="Circle Of Life", cnonce="0a4f113b")
    assert fields(header)["response"] == "6629fae49393a05397450978507c4ef1"
    assert fields(header)["nc"] == "00000001" and fields(header)["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


def test_rfc7616_sha256_example():
    challenge = Challenge.parse('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
                                'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                                'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    header = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                           password="Circle of Life", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert fields(header)["response"] == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_without_qop_rfc2069_form():
    challenge = Challenge.parse('Digest realm="127.0.0.1", nonce="abc"')
    header = authorization(challenge, method="REGISTER", uri="sip:127.0.0.1", username="frontdesk", password="secret")
    import hashlib
    ha1 = hashlib.md5(b"frontdesk:127.0.0.1:secret").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:127.0.0.1").hexdigest()
    assert fields(header)["response"] == hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()
    assert "qop" not in fields(header)


def test_bad_challenges():
    with pytest.raises(ValueError):
        Challenge.parse('Basic realm="x"')
    with pytest.raises(ValueError):
        Challenge.parse('Digest realm="x"')
    assert not Challenge.parse('Digest realm="x", nonce="n", qop="auth-int"').supported
