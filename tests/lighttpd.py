"""A real lighttpd with mod_webdav on 127.0.0.1, the second real server of the upload tests
(Debian packages lighttpd and lighttpd-mod-webdav): own config, pid and logs in a tmp dir.

It serves `prefix/www/passeur/` at `/passeur/` like tests/nginx.py, each dossier behind
HTTP Basic for its own users (mod_auth, plain user file), and takes PUT and MKCOL in each
dossier's `upload/` folder. Unlike nginx with `create_full_put_path`, WebDAV wants an
upload's folder made (MKCOL) before a PUT inside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import stop_process, wait_listening
from tests.nginx import free_port

MODULES_DIR = Path("/usr/lib/lighttpd")

_CONF = """\
server.document-root = "{prefix}/www"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{prefix}/lighttpd.pid"
server.errorlog = "{prefix}/error.log"
server.upload-dirs = ( "{prefix}/tmp" )
server.modules = ( "mod_access", "mod_auth", "mod_authn_file", "mod_webdav",
                   "mod_accesslog" )
accesslog.filename = "{prefix}/access.log"
accesslog.format = "%m %U %s %b"
mimetype.assign = ( "" => "application/octet-stream" )
auth.backend = "plain"
auth.backend.plain.userfile = "{prefix}/auth/users"
{dossiers}
$HTTP["url"] =~ "^/passeur/[A-Za-z0-9]{{1,20}}/upload/" {{
    webdav.activate = "enable"
    webdav.is-readonly = "disable"
}}
"""

_DOSSIER = """\
$HTTP["url"] =~ "^/passeur/{dossier}/" {{
    auth.require = ( "" => ( "method" => "basic", "realm" => "passeur",
                             "require" => "{users}" ) )
}}
"""


def lighttpd_binary() -> str:
    """Return the lighttpd binary, failing the test loudly when it or mod_webdav is missing."""
    found = shutil.which("lighttpd") or shutil.which("/usr/sbin/lighttpd")
    if not found:
        pytest.fail("lighttpd is not installed: apt-get install -y lighttpd "
                    "lighttpd-mod-webdav")
    if not (MODULES_DIR / "mod_webdav.so").exists():
        pytest.fail("lighttpd's WebDAV module is not installed: "
                    "apt-get install -y lighttpd-mod-webdav")
    return found


class Lighttpd:
    """A lighttpd child process in the foreground (-D) with everything under `prefix`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.repo = prefix / "www" / "passeur"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._users: dict[str, list[str]] = {}
        for sub in ("www/passeur", "auth", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        """Return the endpoint address to put in [sources.web] url."""
        return f"http://127.0.0.1:{self.port}/passeur/"

    def add_user(self, dossier: str, user: str, password: str) -> None:
        """Allow `user` to read dossier `dossier` and upload to it (before start)."""
        self._users.setdefault(dossier, []).append(user)
        with open(self.prefix / "auth" / "users", "a") as handle:
            handle.write(f"{user}:{password}\n")

    def _write_conf(self) -> Path:
        dossiers = "".join(
            _DOSSIER.format(dossier=dossier, users="|".join(f"user={u}" for u in users))
            for dossier, users in self._users.items())
        path = self.prefix / "lighttpd.conf"
        path.write_text(_CONF.format(prefix=self.prefix, port=self.port, dossiers=dossiers))
        return path

    def start(self) -> None:
        """Start lighttpd on a free port and wait until it accepts connections."""
        binary = lighttpd_binary()
        for _attempt in range(5):
            self.port = free_port()
            conf = self._write_conf()
            log = open(self.prefix / "stderr.log", "ab")  # noqa: SIM115
            self.process = subprocess.Popen(
                [binary, "-D", "-f", str(conf), "-m", str(MODULES_DIR)],
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("lighttpd did not start: " + self.error_log()[-2000:])

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        return wait_listening(self.process, self.port, timeout)

    def stop(self) -> None:
        """Stop lighttpd (graceful, then forced) and reap it."""
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def error_log(self) -> str:
        """Return lighttpd's error log and what it printed."""
        text = ""
        for name in ("error.log", "stderr.log"):
            path = self.prefix / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def flush_log(self, timeout: float = 10.0) -> None:
        """Have lighttpd write out the access log it buffers (SIGHUP), and wait for it.

        lighttpd says "logfiles cycled" in its error log once the access log is written.
        """
        if self.process is None or self.process.poll() is not None:
            return
        before = self.error_log().count("logfiles cycled")
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.error_log().count("logfiles cycled") == before:
            if time.monotonic() > deadline:
                raise RuntimeError("lighttpd did not write its access log")
            time.sleep(0.01)

    def requests(self, method: str, path_part: str = "") -> list[tuple[str, int]]:
        """Return (path, status) of the logged requests of `method` whose path holds
        `path_part`, in order."""
        self.flush_log()
        path = self.prefix / "access.log"
        found = []
        for line in path.read_text().splitlines() if path.exists() else []:
            fields = line.split(" ")
            if len(fields) >= 3 and fields[0] == method and path_part in fields[1]:
                found.append((fields[1], int(fields[2])))
        return found
