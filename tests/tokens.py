"""Tokens by hand, for the tests that attack or verify them: base64url, reading and tampering
with claims, JWTs signed without PyJWT's safeguards, RS256 tokens, public keys, and a JWKS
endpoint that counts how often it is asked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from scoreboard.keys import SigningKey
from tests.helpers import ACTION_SECRET, USER_SCOPES, make_token

ISSUER = "https://idp.example.com/"
AUDIENCE = "scoreboard-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, read without checking anything."""
    claims: dict[str, Any] = json.loads(unb64(token.split(".")[1]))
    return claims


def tamper(token: str, **changes: Any) -> str:
    """Rewrite claims in the payload, keeping the original header and signature."""
    header, _, signature = token.split(".")
    claims = {**claims_of(token), **changes}
    return f"{header}.{b64(json.dumps(claims, separators=(',', ':')).encode())}.{signature}"


def hand_signed(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: bytes | None,
    digest: Callable[[], Any] = hashlib.sha256,
) -> str:
    """A token built by hand, so that no library safeguard (PyJWT's encoding checks) stands
    between the test and the server. ``key=None`` leaves the signature empty (as for
    ``alg: none``); otherwise HMAC with ``digest`` (SHA-256 unless told)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return f"{signing_input}."
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def token_claims(user: str | None, *, scopes: tuple[str, ...] = USER_SCOPES) -> dict[str, Any]:
    """What a user's token claims, valid for ten minutes; ``user=None`` leaves out ``sub``."""
    now = int(time.time())
    claims: dict[str, Any] = {"exp": now + 600, "iat": now, "scope": " ".join(scopes)}
    if user is not None:
        claims["sub"] = user
    return claims


def fresh_token(user: str, **kwargs: Any) -> str:
    """A token of its own (unique jti), as a client juggling many sessions would hold."""
    return make_token(user, jti=uuid.uuid4().hex, **kwargs)


def service_kid() -> str:
    """The kid of the service's own ticket key (tests/helpers.py ACTION_SECRET)."""
    return SigningKey.from_secret(ACTION_SECRET.encode()).kid


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(key: PrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    """The public half of a key as a JWK (``extra``: more members, such as ``alg``)."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", **extra}


def rs256_token(
    key: rsa.RSAPrivateKey,
    user: str,
    *,
    kid: str | None = None,
    scopes: tuple[str, ...] = USER_SCOPES,
    headers: dict[str, Any] | None = None,
) -> str:
    claims = {**token_claims(user, scopes=scopes), "jti": uuid.uuid4().hex}
    all_headers = {**({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(claims, key, "RS256", headers=all_headers or None)


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts how often it is asked. It serves ``keys``
    (more can be published while it runs), or ``raw`` bytes when those are set."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys: list[dict[str, Any]] = list(keys or [])
        self.raw: bytes | None = None  # when set, served instead of the key set
        self.requests = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests += 1
                body = outer.raw
                if body is None:
                    body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def publish(self, key: PrivateKey, kid: str, **extra: Any) -> None:
        self.keys.append(public_jwk(key, kid, **extra))

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
