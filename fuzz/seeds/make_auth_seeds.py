#!/usr/bin/env python3
"""Write starting inputs for the `token`, `jwk` and `target` fuzz targets into
fuzz/seeds/<target>/ (layouts in src/auth.rs and src/gate.rs).

Tokens are signed with the harness's fixed test keys (src/auth.rs), so the
valid ones verify and the fuzzer starts from inside the claims parser. Keys for
`jwk` are generated fresh each time (one per type the relay accepts); they are
test keys with no other use. Needs the `cryptography` package.
"""

import base64
import hashlib
import hmac
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_780_272_000  # src/auth.rs NOW_UNIX
HS_SECRET = b"moq-fuzz" * 4
ES_SCALAR = int.from_bytes(b"\x00moq-relay-fuzz-key-not-a-secret", "big")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def hs256(header, payload):
    msg = f"{b64(header)}.{b64(payload)}".encode()
    return msg.decode() + "." + b64(hmac.new(HS_SECRET, msg, hashlib.sha256).digest())


def es256(header, payload):
    key = ec.derive_private_key(ES_SCALAR, ec.SECP256R1())
    msg = f"{b64(header)}.{b64(payload)}".encode()
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
    return msg.decode() + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def write(target, name, data):
    out = os.path.join(HERE, target)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def tokens():
    hs = compact({"alg": "HS256", "typ": "JWT"})
    es = compact({"alg": "ES256", "typ": "JWT", "kid": "fuzz-es"})
    claims = [
        {"root": "demo", "put": ["room"], "get": [""], "exp": NOW + 3600, "iat": NOW},
        {"root": "", "get": "anon", "nbf": NOW - 10},
        {"put": "live/cam", "iss": "x", "sub": "y", "jti": "z"},
    ]
    for i, c in enumerate(claims):
        write("token", f"hs256-{i}", b"\x00" + hs256(hs, compact(c)).encode())
        write("token", f"es256-{i}", b"\x00" + es256(es, compact(c)).encode())
        write("token", f"signed-header-{i}", b"\x01" + hs + b"\xff" + compact(c))
        write("token", f"signed-es-{i}", b"\x02" + es + b"\xff" + compact(c))
        write("token", f"payload-{i}", b"\x03" + compact(c))
    write("token", "expired", b"\x03" + compact({"put": "a", "exp": NOW - 1}))
    write("token", "unknown-claim", b"\x03" + compact({"put": "a", "cluster": True}))
    write("token", "crit", b"\x01" + compact({"alg": "HS256", "crit": ["b64"], "b64": False}) + b"\xff{}")


def keys():
    hs = {"kty": "oct", "alg": "HS256", "k": b64(HS_SECRET)}
    write("jwk", "hs256", compact(hs))
    write("jwk", "hs256-base64url", b64(compact(hs)))
    write("jwk", "hs512-scoped", compact({
        "kty": "oct", "alg": "HS512", "kid": "k1", "k": b64(b"s" * 64), "key_ops": ["sign", "verify"],
        "scope": {"root": "demo", "put": ["room"], "get": [""]},
    }))
    p256 = ec.derive_private_key(ES_SCALAR, ec.SECP256R1()).private_numbers()
    es = {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "fuzz-es",
          "x": uint(p256.public_numbers.x, 32), "y": uint(p256.public_numbers.y, 32)}
    write("jwk", "es256-public", compact(es))
    write("jwk", "es256-private", compact({**es, "d": uint(p256.private_value, 32)}))
    p384 = ec.generate_private_key(ec.SECP384R1()).private_numbers()
    write("jwk", "es384", compact({
        "kty": "EC", "crv": "P-384", "alg": "ES384", "x": uint(p384.public_numbers.x, 48),
        "y": uint(p384.public_numbers.y, 48), "d": uint(p384.private_value, 48),
    }))
    ed = ed25519.Ed25519PrivateKey.generate()
    raw = lambda k: k.private_bytes_raw() if hasattr(k, "private_bytes_raw") else None
    write("jwk", "eddsa", compact({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64(ed.public_key().public_bytes_raw()),
        "d": b64(raw(ed)),
    }))
    r = rsa.generate_private_key(65537, 2048).private_numbers()
    pub = {"kty": "RSA", "alg": "RS256", "n": uint(r.public_numbers.n), "e": uint(r.public_numbers.e)}
    write("jwk", "rs256-public", compact(pub))
    write("jwk", "ps256-private", compact({
        **pub, "alg": "PS256", "d": uint(r.d), "p": uint(r.p), "q": uint(r.q),
        "dp": uint(r.dmp1), "dq": uint(r.dmq1), "qi": uint(r.iqmp),
    }))
    write("jwk", "rs512-no-crt", compact({**pub, "alg": "RS512", "d": uint(r.d)}))


def targets():
    for i, t in enumerate(["/anon/clock", "anon?jwt=abc&cost=2", "/demo%2Fwatch//x/?a=b&jwt=",
                           "%zz", "/a%C3%A9b?jwt=%2B%2F", "/" + "s/" * 40]):
        write("target", f"raw-{i}", b"\x00" + t.encode())
    valid = hs256(compact({"alg": "HS256", "typ": "JWT"}),
                  compact({"root": "demo", "put": ["room"], "get": [""], "exp": NOW + 3600}))
    write("target", "raw-token", b"\x00" + f"/demo/room?jwt={valid}".encode())
    for i, (path, root, put, get, query) in enumerate([
        ("demo/room", "demo", "room", "", "cost=1"),
        ("", "demo", "room,live", "watch", ""),
        ("other", "demo", "room", "", ""),
        ("anon/live/x", "anon", "", "live", "jwt=second"),
    ]):
        data = b"\xff".join(s.encode() for s in (path, root, put, get, query))
        write("target", f"signed-{i}", b"\x01" + data)
        write("target", f"signed-last-{i}", b"\x10" + data)
    for i, url in enumerate(["https://user:pw@peer:4443/x?jwt=abcdefghijk&cost=2#frag",
                             "peer:443/?jwt=secretsecret", "moqt://relay/anon?%6Awt=abcdefghij",
                             "https://peer/?jwt=a+b%20cdefgh&jwt=other12345"]):
        write("target", f"url-{i}", b"\x02" + url.encode())


if __name__ == "__main__":
    tokens()
    keys()
    targets()
