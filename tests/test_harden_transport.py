"""Credentials and transport as users really have them: no password in the address, none
in clear, certificates in PEM or DER, UTF-8 passwords, a proxy's refusal said as such."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from daemon.config import load_config
from daemon.web.client import WebClient
from daemon.web.credentials import BASIC, Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME
from daemon.web.publish import Repository
from daemon.web.tls import CABundleError, ssl_context
from tests.faultserver import FAST, Fault, FaultServer, configure_web, file_keyring, make_rig
from tests.helpers import DOSSIER, Home
from tests.nginx import make_tls


def _serve(repo: Repository, **kwargs: object) -> FaultServer:
    repo.root.mkdir(parents=True, exist_ok=True)
    return FaultServer(repo.root, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["https://paul:s3cret-blé@echanges.example.org/passeur/",
                                 "https://:s3cret-blé@echanges.example.org/passeur/"])
def test_a_password_in_the_address_is_refused_and_never_printed(home: Home, url: str) -> None:
    configure_web(home, url)
    config = load_config(home.root / "config.toml")
    assert "passeur login" in config.web.problem
    assert "s3cret" not in config.web.url
    shown = home.passeur("config")
    assert "s3cret" not in shown.stdout + shown.stderr
    assert "passeur login" in shown.stderr
    shown = home.passeur("config", "--json")
    assert "s3cret" not in shown.stdout + shown.stderr


def test_the_other_sources_still_work_with_a_bad_web_setting(home: Home) -> None:
    configure_web(home, "http://echanges.example.org/passeur/")
    update = home.update(1)
    done = home.passeur("import", str(update))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("url", "refused"), [
    ("http://echanges.example.org/passeur/", True),
    ("http://192.168.1.20/passeur/", True),
    ("http://127.0.0.1:8080/passeur/", False),
    ("http://localhost/passeur/", False),
    ("http://[::1]:8080/passeur/", False),
    ("https://echanges.example.org/passeur/", False),
])
def test_plain_http_is_for_this_computer_only(home: Home, url: str, refused: bool) -> None:
    configure_web(home, url)
    assert bool(load_config(home.root / "config.toml").web.problem) is refused


def test_a_refused_address_is_said_at_each_poll_and_never_contacted(
        home: Home, repo: Repository) -> None:
    server = _serve(repo).start()
    try:
        url = server.base_url.replace("127.0.0.1", "paul:pw@127.0.0.1")
        configure_web(home, url)
        rig = make_rig(home)
        report = rig.poll()
        rig.close()
        assert [str(f.code) for f in report.failures] == ["setting-invalid"]
        assert server.seen == []
    finally:
        server.stop()


@pytest.mark.parametrize("password", ["blé-été-2024", "cœur-œuvre", "pâté"])
def test_utf8_passwords_are_sent_as_servers_read_them(home: Home, repo: Repository,
                                                       password: str) -> None:
    update = home.update(1)
    repo.publish(update)
    server = _serve(repo, credentials=("paul-émile", password)).start()
    try:
        configure_web(home, server.base_url)
        store = CredentialStore(file_keyring(home.root / "kr.cfg"))
        store.set(DOSSIER, Credential(BASIC, password, user="paul-émile"))
        rig = make_rig(home, store)
        report = rig.poll()
        rig.close()
        assert report.queued == [update.name], report.failures
    finally:
        server.stop()


def test_a_proxy_refusing_its_credentials_is_said_as_such(
        home: Home, repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _serve(repo).start()
    try:
        # Through an http:// proxy, named as the desktop does it (the environment), the
        # request goes to the proxy, which answers 407.
        proxy.inject(INDEX_NAME, Fault("status", status=407,
                                       headers={"Proxy-Authenticate": 'Basic realm="p"'}))
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "localhost")
        client = WebClient("http://echanges.invalid/passeur/",
                           CredentialStore(file_keyring(tmp_path / "kr.cfg")), FAST)
        with pytest.raises(WebError) as failed:
            client.fetch_index(DOSSIER, None)
        client.close()
        assert failed.value.code is Failure.PROXY_AUTH
        assert "proxy" in failed.value.message()
        # A site the environment says to reach directly is not sent through the proxy.
        monkeypatch.setenv("no_proxy", "echanges.invalid")
        direct = WebClient("http://echanges.invalid/passeur/",
                           CredentialStore(file_keyring(tmp_path / "kr.cfg")), FAST)
        assert direct.session.proxies == {}
    finally:
        proxy.stop()


def _der(pem: Path, folder: Path) -> Path:
    der = folder / "cabinet.cer"
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return der


@pytest.fixture
def https_server(repo: Repository, tmp_path: Path) -> Iterator[tuple[FaultServer, Path]]:
    """The fault server behind TLS, its certificate signed by a private CA."""
    tls = make_tls(tmp_path / "tls")
    server = _serve(repo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    yield server, tls.ca_cert
    server.stop()


@pytest.mark.parametrize("form", ["pem", "der"])
def test_a_private_ca_in_pem_or_der_is_trusted(home: Home, repo: Repository, tmp_path: Path,
                                               https_server: tuple[FaultServer, Path],
                                               form: str) -> None:
    server, ca_pem = https_server
    update = home.update(1)
    repo.publish(update)
    bundle = ca_pem if form == "pem" else _der(ca_pem, tmp_path)
    configure_web(home, server.base_url.replace("http://", "https://"), ca_bundle=bundle)
    assert load_config(home.root / "config.toml").web.problem == ""
    rig = make_rig(home)
    report = rig.poll()
    rig.close()
    assert report.queued == [update.name], report.failures


@pytest.mark.parametrize("content", [None, b"not a certificate", b""])
def test_a_missing_or_wrong_ca_bundle_is_said_at_load_and_stops_nothing(
        home: Home, tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "cabinet.cer"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(CABundleError):
        ssl_context(bundle)
    configure_web(home, "https://echanges.example.org/passeur/", ca_bundle=bundle)
    config = load_config(home.root / "config.toml")
    assert "ca_bundle" in config.web.problem
    assert str(bundle) in config.web.problem
    rig = make_rig(home)  # the service builds its sources: no traceback here
    report = rig.poll()
    rig.close()
    assert [str(f.code) for f in report.failures] == ["setting-invalid"]


def test_a_server_without_etag_is_asked_if_modified_since(home: Home, tmp_path: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    answers: list[tuple[str, int, str | None]] = []

    class Handler(SimpleHTTPRequestHandler):
        def send_response(self, code: int, message: str | None = None) -> None:
            answers.append((self.path, code, self.headers.get("If-Modified-Since")))
            super().send_response(code, message)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads `answers`."""

    www = tmp_path / "www"
    repo = Repository(www / "passeur", home.key)
    update = home.update(1)
    repo.publish(update)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        configure_web(home, f"http://127.0.0.1:{httpd.server_address[1]}/passeur/")
        rig = make_rig(home)
        assert rig.poll().queued == [update.name]
        again = rig.poll()
        rig.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert again.ok
    index = [(code, since) for path, code, since in answers if path.endswith(INDEX_NAME)]
    assert index[0] == (200, None)
    assert index[-1][0] == 304
    assert index[-1][1]  # the date the first answer gave


def test_a_local_http_site_costs_no_certificate_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import daemon.web.client as client

    def no_tls(*_args: object) -> None:
        raise AssertionError("the system's certificates were loaded")

    monkeypatch.setattr(client, "ssl_context", no_tls)
    client.make_session("http://127.0.0.1:8080/passeur/")
    with pytest.raises(AssertionError):
        client.make_session("https://echanges.cabinet.example/passeur/")
