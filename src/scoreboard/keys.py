"""Where signing and verification keys come from.

Configured keys win. In development with nothing configured, random secrets are generated
once and kept in ``<data_dir>/dev-secrets.json`` (mode 0600), so tokens printed by
``scoreboard token`` keep working across restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from scoreboard.config import Settings

DEV_SECRETS_FILE = "dev-secrets.json"
ASYMMETRIC = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> SigningKey:
        return cls(kid=hashlib.sha256(secret).hexdigest()[:12], secret=secret)


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """Everything the service needs to check tokens and sign action tickets."""

    jwt_algorithm: str | None  # None: a JWKS URL, each key's own RS256/ES256
    jwt_secret: bytes | None  # HS256: verifies and signs tokens
    jwt_public_key: str | None  # RS256/ES256 PEM text
    jwks_url: str | None
    action_key: SigningKey  # signs new tickets
    action_keys: dict[str, SigningKey]  # verifies tickets: current and previous, by kid


def _read_pem(value: str) -> str:
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text()


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    """Create the dev secrets file once; every later process reads the same one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_SECRETS_FILE
    fresh = {"jwt_secret": secrets.token_urlsafe(48), "action_secret": secrets.token_urlsafe(48)}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    with os.fdopen(fd, "w") as out:
        json.dump(fresh, out)
    return fresh


def _algorithm_of(pem: str, configured: str | None) -> str:
    """RS256 or ES256, from the key itself; a configured algorithm must agree with it."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ValueError(f"SCOREBOARD_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        algorithm = "ES256"
    else:
        raise ValueError("SCOREBOARD_JWT_PUBLIC_KEY must be an RSA or a P-256 EC public key")
    if configured and configured != algorithm:
        raise ValueError(f"SCOREBOARD_JWT_ALGORITHM={configured} does not fit a {algorithm} key")
    return algorithm


def load_keys(settings: Settings) -> KeyMaterial:
    settings.check_production_safety()
    needs_dev = settings.env == "dev" and (
        settings.action_secret is None
        or not (settings.jwt_secret or settings.jwt_public_key or settings.jwks_url)
    )
    dev = _dev_secrets(settings.data_dir) if needs_dev else {}

    public_key = _read_pem(settings.jwt_public_key) if settings.jwt_public_key else None
    jwt_secret: bytes | None = None
    if settings.jwt_secret:
        jwt_secret = settings.jwt_secret.get_secret_value().encode()
    elif public_key is None and settings.jwks_url is None:
        jwt_secret = dev["jwt_secret"].encode()

    current = (
        settings.action_secret.get_secret_value()
        if settings.action_secret
        else dev["action_secret"]
    ).encode()
    action_key = SigningKey.from_secret(current)
    previous = [
        SigningKey.from_secret(s.get_secret_value().encode())
        for s in settings.action_previous_secrets
    ]
    if jwt_secret is not None and any(k.secret == jwt_secret for k in (action_key, *previous)):
        raise ValueError("SCOREBOARD_ACTION_SECRET must differ from SCOREBOARD_JWT_SECRET")
    if public_key:
        algorithm: str | None = _algorithm_of(public_key, settings.jwt_algorithm)
    elif settings.jwks_url:
        algorithm = settings.jwt_algorithm
    else:
        algorithm = "HS256"
    return KeyMaterial(
        jwt_algorithm=algorithm,
        jwt_secret=jwt_secret,
        jwt_public_key=public_key,
        jwks_url=settings.jwks_url,
        action_key=action_key,
        action_keys={k.kid: k for k in (action_key, *previous)},
    )
