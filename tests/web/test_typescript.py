"""scoreboard-client.d.ts describes scoreboard-client.js: `tsc --noEmit` (strict) accepts the
README's usage and refuses misuse (each `@ts-expect-error` in usage.ts must be an error)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

pytest_plugins = ["tests.node_tools"]


HERE = Path(__file__).parent / "typescript"
STATIC = Path(__file__).resolve().parents[2] / "src/scoreboard/web/static"


def _tsc(node_modules: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(node_modules / "typescript/bin/tsc"), "-p", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_declarations_type_check_the_readme_usage(node_modules: Path, tmp_path: Path) -> None:
    for name in ("usage.ts", "tsconfig.json"):
        shutil.copy(HERE / name, tmp_path / name)
    shutil.copy(STATIC / "scoreboard-client.d.ts", tmp_path / "scoreboard-client.d.ts")
    result = _tsc(node_modules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_use_is_a_type_error(node_modules: Path, tmp_path: Path) -> None:
    shutil.copy(HERE / "tsconfig.json", tmp_path / "tsconfig.json")
    shutil.copy(STATIC / "scoreboard-client.d.ts", tmp_path / "scoreboard-client.d.ts")
    (tmp_path / "usage.ts").write_text(
        'import { ScoreboardClient } from "./scoreboard-client.js";\n'
        "const c = new ScoreboardClient({ getToken: async () => null });\n"
        'c.addEventListener("score", (e) => e.detail.newScore.toUpperCase());\n'
    )
    result = _tsc(node_modules, tmp_path)
    assert result.returncode != 0
    assert "toUpperCase" in result.stdout
