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

from scoreboard.config import Settings

DEV_SECRETS_FILE = "dev-secrets.json"


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

    jwt_algorithm: str
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


def _infer_algorithm(settings: Settings, public_key: str | None) -> str:
    if settings.jwt_algorithm:
        return settings.jwt_algorithm
    if public_key and "EC " in public_key.split("\n", 1)[0]:
        return "ES256"
    if public_key is None and settings.jwks_url is None:
        return "HS256"
    return "RS256"


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
    return KeyMaterial(
        jwt_algorithm=_infer_algorithm(settings, public_key),
        jwt_secret=jwt_secret,
        jwt_public_key=public_key,
        jwks_url=settings.jwks_url,
        action_key=action_key,
        action_keys={k.kid: k for k in (action_key, *previous)},
    )
