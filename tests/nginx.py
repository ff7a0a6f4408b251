"""A real nginx on 127.0.0.1 for the web tests: own prefix, config, pid and logs in a tmp dir.

It serves `root/www/passeur/` at `/passeur/` the way docs/nginx-example.conf does: one
htpasswd file per dossier, PUT (and HEAD, to see what arrived) in each dossier's `upload/`
folder, one folder per upload made by nginx itself (`create_full_put_path on`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import stop_process, wait_listening

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def nginx_binary() -> str:
    """Return the nginx binary, failing the test loudly when it is not installed."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail("nginx is not installed: apt-get install -y nginx-light")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssha_hash(password: str) -> str:
    """Return an htpasswd `{SSHA}` hash (salted SHA-1, understood by nginx)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # nginx reads {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class TLSFiles:
    """A private CA and a server certificate for 127.0.0.1 / localhost, signed by it."""

    ca_cert: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> TLSFiles:
    """Create a self-signed CA and a server certificate with `cryptography`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cabinet de test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


# An upload's folder (for MKCOL), its parts and part list, or a single file.
UPLOAD_RE = ("^/passeur/(?<dossier>[A-Za-z0-9]{1,20})/upload/"
             "[^/.][^/]*(/([^/.][^/]*)?)?$")

_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 128; }}
http {{
    log_format passeur escape=none '$request_method $uri $status range=$http_range '
                       'inm=$http_if_none_match sent=$body_bytes_sent';
    access_log {prefix}/access.log passeur;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ application/json json; application/octet-stream wwz wvz; }}
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port}{ssl}{reuseport};
        {tls}
        root {prefix}/www;
        # An upload's folder, parts and part list (upload/<file>/part-00001…), or a file.
        location ~ "{upload_re}" {{
            auth_basic "passeur";
            auth_basic_user_file {prefix}/auth/$dossier.htpasswd;
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size {max_body};
            client_body_buffer_size 1m;  # as docs/nginx-example.conf
            limit_except PUT HEAD {{ deny all; }}
        }}
        location ~ "^/passeur/(?<dossier>[A-Za-z0-9]{{1,20}})/[^/.][^/]*$" {{
            auth_basic "passeur";
            auth_basic_user_file {prefix}/auth/$dossier.htpasswd;
            limit_except GET {{ deny all; }}
        }}
        location / {{ return 404; }}
    }}
}}
"""


EXAMPLE_CONF = Path(__file__).resolve().parents[1] / "docs" / "nginx-example.conf"


def documented_server(prefix: Path, port: int, tls: TLSFiles) -> str:
    """Return the firm's server block of docs/nginx-example.conf, moved to 127.0.0.1:port
    and into `prefix` (certificates, root, password files), everything else as written."""
    text = EXAMPLE_CONF.read_text()
    start = text.index("server {")
    block = text[start:text.index("\n}\n", start) + 2]
    lines = [line for line in block.splitlines() if "listen [::]" not in line]
    block = "\n".join(lines)
    block = re.sub(r"listen 443 ssl[^;]*;", f"listen 127.0.0.1:{port} ssl;", block)
    block = re.sub(r"ssl_certificate +\S+;", f"ssl_certificate {tls.cert};", block)
    block = re.sub(r"ssl_certificate_key +\S+;", f"ssl_certificate_key {tls.key};", block)
    block = block.replace("root /srv;", f"root {prefix}/www;")
    return block.replace("/etc/nginx/passeur/", f"{prefix}/auth/")


class Nginx:
    """An nginx child process (not a daemon) with everything under `prefix`."""

    def __init__(self, prefix: Path, tls: TLSFiles | None = None,
                 max_body: str = "64m", documented: bool = False, workers: int = 1) -> None:
        self.prefix = prefix
        self.tls = tls
        self.max_body = max_body  # client_max_body_size of the upload location
        # One worker for the tests; a benchmark gives it the cores, as a real server has
        # them (each worker takes its own connections: `reuseport`).
        self.workers = workers
        # Serve with docs/nginx-example.conf's own server block (needs `tls`).
        self.documented = documented
        self.repo = prefix / "www" / "passeur"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        for sub in ("www/passeur", "auth", "tmp", "logs"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        """Return the endpoint address to put in [sources.web] url."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/passeur/"

    def add_user(self, dossier: str, user: str, password: str) -> None:
        """Allow `user` to read dossier `dossier` (and upload to it)."""
        with open(self.prefix / "auth" / f"{dossier}.htpasswd", "a") as handle:
            handle.write(f"{user}:{ssha_hash(password)}\n")

    def _write_conf(self) -> Path:
        tls = ""
        if self.tls:
            tls = (f"ssl_certificate {self.tls.cert}; ssl_certificate_key {self.tls.key};")
        # Workers of a root master drop to "nobody", who cannot read pytest's 0700 tmp dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = _CONF.format(prefix=self.prefix, port=self.port, user=user,
                            ssl=" ssl" if self.tls else "", tls=tls, max_body=self.max_body,
                            upload_re=UPLOAD_RE, workers=self.workers,
                            reuseport=" reuseport" if self.workers > 1 else "")
        if self.documented:
            assert self.tls is not None, "the documented server is TLS only"
            conf = (conf[:conf.index("    server {")]
                    + documented_server(self.prefix, self.port, self.tls) + "\n}\n")
        path = self.prefix / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self, same_port: bool = False) -> None:
        """Start nginx on a free port (or, with `same_port`, again on the port it had: the
        farmer's configuration names that address) and wait until it accepts connections."""
        for _attempt in range(1 if same_port else 5):
            if not same_port:
                self.port = free_port()
            self._spawn()
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("nginx did not start: " + self.error_log()[-2000:])

    def _spawn(self) -> None:
        conf = self._write_conf()
        log = open(self.prefix / "logs" / "stderr.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", str(conf), "-e",
             str(self.prefix / "error.log")],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        return wait_listening(self.process, self.port, timeout)

    def stop(self) -> None:
        """Stop nginx (graceful, then forced) and reap it."""
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def error_log(self) -> str:
        """Return nginx's error log."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[str]:
        """Return the access log lines (method, path and status of every request)."""
        path = self.prefix / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def requests(self, method: str, path_part: str = "") -> list[tuple[str, int]]:
        """Return (path, status) of the logged requests of `method` whose path holds
        `path_part`, in order."""
        found = []
        for line in self.access_log():
            fields = line.split(" ")
            if len(fields) >= 3 and fields[0] == method and path_part in fields[1]:
                found.append((fields[1], int(fields[2])))
        return found
