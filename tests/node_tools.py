"""Node packages some tests need (TypeScript's compiler, the AsyncAPI JSON schemas), installed
once with npm into a cache directory. Use it with ``pytest_plugins = ["tests.node_tools"]``.

Without npm the tests that need them skip, saying how to enable them; with CI=true they fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGES = ("typescript@5.9.3", "@asyncapi/specs@6.10.0", "swagger-ui-dist@5.35.0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        message = "npm is not installed (apt-get install npm): TypeScript, AsyncAPI, Swagger UI"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    key = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / f"scoreboard-node-{key}"
    modules = root / "node_modules"
    if not (modules / ".installed").exists():
        root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), *PACKAGES],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        (modules / ".installed").touch()
    return modules
