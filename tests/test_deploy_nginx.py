"""deploy/nginx/nginx.conf (the main configuration compose mounts) is one nginx accepts with
the site template, and it is sized for the documented live sockets: two instances holding
19,500 each, every client socket costing nginx two connections."""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from pathlib import Path

from tests.production.conftest import require_nginx

DEPLOY = Path(__file__).resolve().parent.parent / "deploy/nginx"
SOCKETS_PER_INSTANCE = 19_500


def _directive(text: str, name: str) -> int:
    match = re.search(rf"^\s*{name}\s+(\d+);", text, re.MULTILINE)
    assert match, name
    return int(match[1])


def test_the_main_configuration_is_sized_for_the_documented_sockets() -> None:
    main = (DEPLOY / "nginx.conf").read_text()
    workers = _directive(main, "worker_processes")
    per_worker = _directive(main, "worker_connections")
    assert workers * per_worker >= 2 * 2 * SOCKETS_PER_INSTANCE
    assert _directive(main, "worker_rlimit_nofile") >= 2 * per_worker


def test_nginx_accepts_the_main_configuration_with_the_site(tmp_path: Path) -> None:
    require_nginx()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    site = string.Template((DEPLOY / "scoreboard.conf.template").read_text()).safe_substitute(
        APP_1="127.0.0.1:9001", APP_2="127.0.0.1:9002", LISTEN="127.0.0.1:9000"
    )
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d/site.conf").write_text(site)
    main = (DEPLOY / "nginx.conf").read_text()
    main = main.replace("/etc/nginx/conf.d/", f"{tmp_path}/conf.d/")
    main = main.replace("/var/run/nginx.pid", f"{tmp_path}/nginx.pid")
    (tmp_path / "nginx.conf").write_text(main)
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
