"""HTTPS: --ssl-* flags, static files and apps, ALPN, large files, certificate reload on SIGHUP.

Certificates are made here, by ``trustme``, for 127.0.0.1.
"""
from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest

trustme = pytest.importorskip("trustme")

from server_helpers import (  # noqa: E402
    CliProcess,
    ConnectionClosed,
    DocRoot,
    RawConnection,
    RawResponse,
    port_from_url,
    server_side_of,
    unread_bytes,
    wait_unread,
)


@pytest.fixture(scope="module")
def ca() -> "trustme.CA":
    return trustme.CA()


def write_cert(ca, directory: Path, name: str, password: Optional[bytes] = None) -> Tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = directory / f"{name}.pem", directory / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    if password is None:
        cert.private_key_pem.write_to_path(str(keyfile))
    else:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
        keyfile.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        ))
    return certfile, keyfile


def client_context(ca, alpn: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if alpn:
        context.set_alpn_protocols(["h2", "http/1.1"])
    return context


class TlsConnection(RawConnection):
    """RawConnection's response reader over a TLS socket."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 5.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buffer = bytearray()
        self.eof = False

    def serial(self) -> int:
        der = self.sock.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number


def served_serial(port: int, ca) -> int:
    with TlsConnection(port, client_context(ca)) as conn:
        return conn.serial()


def start(tmp_path: Path, target: str, certfile: Path, keyfile: Path, *flags: str, cwd=None) -> Tuple[CliProcess, int]:
    srv = CliProcess([target, "--port", "0", "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile), *flags],
                     log_path=tmp_path / "server.log", cwd=cwd)
    url = srv.wait_listening()
    assert url.startswith("https://127.0.0.1:"), url
    return srv, port_from_url(url)


@pytest.fixture(scope="module")
def tls_server(ca, docroot: DocRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of one TLS server for the module's tests that only connect to it: the docroot,
    a key encrypted with a password (--ssl-keyfile-password), no other TLS flag."""
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = write_cert(ca, directory, "server", password=b"s3cret")
    srv, port = start(directory, str(docroot.root), certfile, keyfile, "--ssl-keyfile-password", "s3cret")
    with srv:
        yield port
        assert srv.stop() == 0, srv.output()


def test_static_files_over_tls_with_alpn(ca, docroot: DocRoot, tls_server: int) -> None:
    with TlsConnection(tls_server, client_context(ca)) as conn:
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
        for name, body in [("/small.txt", docroot.small), ("/large.bin", docroot.large),
                           ("/medium.bin", docroot.medium), ("/small.txt", docroot.small)]:
            response = conn.exchange("GET", name)
            assert (response.status, response.body) == (200, body), name
        partial = conn.exchange("GET", "/large.bin", [("Range", "bytes=1000000-3999999")])
        assert (partial.status, partial.body) == (206, docroot.large[1000000:4000000])


def wait_receive_queue_full(sock: socket.socket, still: float = 0.05, timeout: float = 5.0) -> None:
    """Wait until bytes wait unread on ``sock`` and their count has not grown for ``still``
    seconds: the client's window is closed, so the server's writes find no room."""
    deadline = time.monotonic() + timeout
    wait_unread(sock, timeout)
    count, since = unread_bytes(sock), time.monotonic()
    while time.monotonic() - since < still:
        assert time.monotonic() < deadline, f"{sock!r} still filling after {timeout} s"
        time.sleep(0.005)
        now = unread_bytes(sock)
        if now != count:
            count, since = now, time.monotonic()


def test_a_slow_reader_gets_a_large_file_whole_over_tls(ca, docroot: DocRoot, tls_server: int) -> None:
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(5)
    raw.connect(("127.0.0.1", tls_server))
    conn = TlsConnection.__new__(TlsConnection)
    conn.sock = client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1")
    conn.buffer, conn.eof = bytearray(), False
    with conn:
        conn.request("GET", "/large.bin")
        head = conn.read_head()
        assert head.status == 200
        wait_receive_queue_full(conn.sock)  # the server hits a full socket and waits for room
        assert conn.read_exact(len(docroot.large)) == docroot.large


APP = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = ("%s %s" % (scope["scheme"], scope["path"])).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
''')


def test_apps_over_tls_see_https(ca, tmp_path: Path) -> None:
    (tmp_path / "tlsapp.py").write_text(APP)
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    srv, port = start(tmp_path, "tlsapp:app", certfile, keyfile, cwd=tmp_path)
    with srv, TlsConnection(port, client_context(ca)) as conn:
        assert conn.exchange("GET", "/x").body == b"https /x"


def test_plain_http_to_a_tls_port_gets_no_answer(docroot: DocRoot, tls_server: int) -> None:
    with RawConnection(tls_server) as conn:
        conn.send(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert docroot.small not in conn.read_to_eof()


def test_encrypted_key_with_password(ca, tls_server: int) -> None:
    with TlsConnection(tls_server, client_context(ca)) as conn:  # the module's server has one
        assert conn.exchange("GET", "/small.txt").status == 200


def test_a_key_its_password_cannot_open_is_one_line(ca, docroot: DocRoot, tmp_path: Path) -> None:
    certfile, keyfile = write_cert(ca, tmp_path, "server", password=b"s3cret")
    args = [str(docroot.root), "--port", "0", "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile),
            "--ssl-keyfile-password", "wrong"]
    with CliProcess(args, log_path=tmp_path / "log") as srv:
        assert srv.wait_exit(10) == 3
    lines = srv.output().strip().splitlines()
    assert len(lines) == 1 and "cannot load the certificate" in lines[0], lines


@pytest.mark.parametrize("flags, message", [
    (["--ssl-version", "3"], "argument --ssl-version: invalid choice: 3 (choose from 2, 5, 17)"),
    (["--ssl-certfile", "cert.pem", "--ssl-version", "16"], "argument --ssl-version: invalid choice: 16"),
    (["--ssl-certfile", "cert.pem", "--ssl-ciphers", "NO-SUCH-CIPHER"],
     "--ssl-ciphers 'NO-SUCH-CIPHER': OpenSSL selects no cipher from it"),
    (["--ssl-keyfile", "key.pem"], "--ssl-keyfile needs --ssl-certfile"),
    (["--ssl-keyfile-password", "s3cret"], "--ssl-keyfile-password needs --ssl-certfile"),
    (["--ssl-certfile", "cert.pem", "--ssl-cert-reqs", "2"], "--ssl-cert-reqs 2 needs --ssl-ca-certs"),
    (["--ssl-certfile", "cert.pem", "--ssl-cert-reqs", "1"], "--ssl-cert-reqs 1 needs --ssl-ca-certs"),
])
def test_tls_settings_no_file_could_make_work_are_usage_errors(tmp_path: Path, flags, message, capsys) -> None:
    """Refused before any file is read or the port opened (exit code 2, one line), where a
    TLS 1.0 --ssl-version and a cipher list selecting nothing were found as the context was
    built (exit code 3), and client certificates asked for with no CA, or an --ssl-version
    without --ssl-certfile, were served with."""
    from fastserve.cli import main

    try:
        code = main([str(tmp_path), "--port", "0", *flags])
    except SystemExit as exc:  # argparse's own refusal of a value not among the choices
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.startswith(f"fastserve: {message}")


def test_the_ssl_versions_offered_are_the_ones_the_context_pins() -> None:
    from fastserve.config import CHOICES
    from fastserve.server.tls import PROTOCOL_VERSIONS

    assert CHOICES["ssl_version"] == tuple(PROTOCOL_VERSIONS)


def test_missing_certificate_does_not_exist(docroot: DocRoot, tmp_path: Path) -> None:
    with CliProcess([str(docroot.root), "--ssl-certfile", "nope.pem"], log_path=tmp_path / "log") as srv:
        assert srv.wait_exit(10) == 3
    assert "--ssl-certfile 'nope.pem' does not exist" in srv.output()


@pytest.fixture(scope="module")
def strict_tls_server(ca, docroot: DocRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of one TLS server for the module's tests of restricting flags: TLS 1.2 alone
    (uvicorn's --ssl-version 5, ssl.PROTOCOL_TLSv1_2), its suites limited by --ssl-ciphers, and
    client certificates from the CA required."""
    directory = tmp_path_factory.mktemp("tls-strict")
    certfile, keyfile = write_cert(ca, directory, "server")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv, port = start(directory, str(docroot.root), certfile, keyfile, "--ssl-ciphers", "ECDHE+CHACHA20",
                      "--ssl-version", "5", "--ssl-ca-certs", str(ca_file), "--ssl-cert-reqs", "2")
    with srv:
        yield port
        assert srv.stop() == 0, srv.output()


def client_with_certificate(ca) -> ssl.SSLContext:
    context = client_context(ca)
    ca.issue_cert("client@example.test").configure_cert(context)
    return context


def test_ciphers_are_applied(ca, strict_tls_server: int) -> None:
    with TlsConnection(strict_tls_server, client_with_certificate(ca)) as conn:
        assert "CHACHA20" in conn.sock.cipher()[0]


def test_ssl_version_pins_the_protocol_version(ca, tls_server: int, strict_tls_server: int) -> None:
    with TlsConnection(tls_server, client_context(ca)) as conn:
        assert conn.sock.version() == "TLSv1.3"  # the default: TLS 1.2 and newer
    with TlsConnection(strict_tls_server, client_with_certificate(ca)) as conn:
        assert conn.sock.version() == "TLSv1.2"
    newest_only = client_with_certificate(ca)
    newest_only.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises((ssl.SSLError, ConnectionError)):
        TlsConnection(strict_tls_server, newest_only)


def test_client_certificates_required(ca, strict_tls_server: int) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, ConnectionClosed)):
        with TlsConnection(strict_tls_server, client_context(ca)) as conn:
            conn.exchange("GET", "/small.txt")  # TLS 1.3 reports the refusal on first read
    with TlsConnection(strict_tls_server, client_with_certificate(ca)) as conn:
        assert conn.exchange("GET", "/small.txt").status == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_the_certificate_without_dropping_connections(ca, docroot: DocRoot, tmp_path: Path,
                                                                     workers: str) -> None:
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    old_serial = ca_serial = None
    srv, port = start(tmp_path, str(docroot.root), certfile, keyfile, "--workers", workers)
    with srv:
        old_serial = served_serial(port, ca)
        kept = TlsConnection(port, client_context(ca))
        assert kept.exchange("GET", "/small.txt").status == 200
        new_cert, new_key = write_cert(ca, tmp_path, "next")
        new_cert.replace(certfile)
        new_key.replace(keyfile)
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ca_serial = served_serial(port, ca)
            if ca_serial != old_serial and srv.output().count("certificate reloaded") >= int(workers):
                break
            time.sleep(0.05)
        assert ca_serial != old_serial, srv.output()
        for _ in range(4):  # every worker serves the new one
            assert served_serial(port, ca) == ca_serial
        response: RawResponse = kept.exchange("GET", "/medium.bin")
        assert (response.status, response.body) == (200, docroot.medium)
        assert kept.serial() == old_serial
        kept.close()
        assert srv.proc.poll() is None


def test_sighup_before_the_loop_runs_is_kept_for_the_reload_not_fatal() -> None:
    # Between fork and the event loop's own handler, a SIGHUP (a certificate rotation sent to
    # every worker) must neither kill the worker nor be lost: it is replayed once the loop runs.
    from fastserve.server.worker import EarlySignals

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        EarlySignals.install()
        assert not EarlySignals.reload_pending
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            if EarlySignals.reload_pending:
                break
            time.sleep(0.001)
        assert EarlySignals.reload_pending and EarlySignals.received is None
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_a_handshake_under_way_as_the_server_stops_is_finished_and_answered(ca, docroot: DocRoot,
                                                                             tmp_path: Path) -> None:
    """A client accepted just before the stop, still in its TLS handshake, is waited for: its
    request is answered (Connection: close) instead of the connection dying with the worker."""
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    srv, port = start(tmp_path, str(docroot.root), certfile, keyfile, "--graceful-timeout", "5")
    with srv:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)  # accepted; no ClientHello yet
        time.sleep(0.2)  # the idle worker takes it from the queue at once
        srv.terminate()
        deadline = time.monotonic() + 5
        while "shutting down" not in srv.output():
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.02)
        conn = TlsConnection.__new__(TlsConnection)
        conn.sock, conn.buffer, conn.eof = client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1"), bytearray(), False
        response = conn.exchange("GET", "/small.txt")
        assert (response.status, response.body, response.header("connection")) == (200, docroot.small, "close")
        conn.close()
        assert srv.wait_exit(5.0) == 0, srv.output()


def test_tls_handshakes_under_way_count_toward_max_connections(ca, docroot: DocRoot, tmp_path: Path) -> None:
    """A TLS handshake under way holds a connection's memory before the protocol hears of it:
    it counts toward --max-connections (as nginx counts it). At the limit the worker stops
    accepting (a 503 would cost a full handshake), so the next client waits in the listen queue
    with its ClientHello unanswered, and is served as soon as a slot is free again."""
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    srv, port = start(tmp_path, str(docroot.root), certfile, keyfile, "--max-connections", "2")
    with srv:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        for sock in silent:
            server_side_of(srv.pid, sock)  # the worker took it from the queue
        outgoing, incoming = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        waiting = socket.create_connection(("127.0.0.1", port), timeout=0.5)  # the kernel completes it
        waiting.sendall(outgoing.read())  # the ClientHello
        with pytest.raises(socket.timeout):
            waiting.recv(65536)  # not accepted: no ServerHello
        silent.pop().close()  # a handshake given up: its slot is free
        waiting.settimeout(5)
        incoming.write(waiting.recv(65536))  # the ServerHello comes now
        tls.do_handshake()  # (TLS 1.3: its first flight finishes it)
        tls.write(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        waiting.sendall(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer:
            incoming.write(waiting.recv(65536))
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        for sock in [waiting, *silent]:
            sock.close()
        assert "--max-connections (2) reached" in srv.output()


# ---- ssl_context_factory: uvicorn.run's keyword for a context the program builds itself ----

FACTORY_SCRIPT = textwrap.dedent('''
    import ssl, sys
    import fastserve

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = scope["scheme"].encode()
        await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}})
        await send({{"type": "http.response.body", "body": body}})

    def factory(config, default):
        print("factory called with", type(config).__name__, flush=True)
        {body}

    sys.exit(fastserve.run(app, host="127.0.0.1", port={port}, graceful_timeout=2, ssl_context_factory=factory,
                           {options}))
''')


def run_factory_script(tmp_path: Path, body: str, options: str = "") -> Tuple["subprocess.Popen[bytes]", int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "serve_factory.py"
    script.write_text(FACTORY_SCRIPT.format(body=body, port=port, options=options))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT), port


def https_answer(port: int, ca, proc, timeout: float = 15.0) -> RawResponse:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with TlsConnection(port, client_context(ca)) as conn:
                return conn.exchange("GET", "/")
        except (ConnectionRefusedError, ConnectionResetError):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no TLS server"
            time.sleep(0.1)


@pytest.mark.parametrize("uses_default", [False, True])
def test_run_serves_with_the_context_ssl_context_factory_builds(ca, tmp_path: Path, uses_default: bool) -> None:
    """``fastserve.run(app, ssl_context_factory=f)`` as ``uvicorn.run`` takes it: ``f(config,
    default)`` returns the context; ``default()`` is the one the ``ssl_*`` settings describe.
    It used to be refused as an unknown keyword."""
    certfile, keyfile = write_cert(ca, tmp_path, "server")
    if uses_default:
        body = "context = default(); context.options |= ssl.OP_NO_TICKET; return context"
        options = f"ssl_certfile={str(certfile)!r}, ssl_keyfile={str(keyfile)!r}"
    else:  # no ssl_* setting at all: the factory alone turns TLS on
        body = (f"context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); "
                f"context.load_cert_chain({str(certfile)!r}, {str(keyfile)!r}); return context")
        options = ""
    proc, port = run_factory_script(tmp_path, body, options)
    try:
        answer = https_answer(port, ca, proc)
        assert (answer.status, answer.body) == (200, b"https")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    output = proc.stdout.read().decode()
    assert "factory called with Config" in output and f"on https://127.0.0.1:{port}" in output, output


@pytest.mark.parametrize("body, message", [
    ("return None", "ssl_context_factory returned NoneType, not an ssl.SSLContext"),
    ("return default()", "ssl_context_factory asked for the default context, which needs ssl_certfile"),
])
def test_a_factory_that_gives_no_context_stops_the_start(tmp_path: Path, body: str, message: str) -> None:
    proc, _ = run_factory_script(tmp_path, body)
    assert proc.wait(20) != 0
    assert message in proc.stdout.read().decode()


def test_sighup_with_a_factory_context_and_no_certificate_file_keeps_serving(caplog) -> None:
    """SIGHUP re-reads the certificate files; a context the factory built from elsewhere has
    none to re-read, and stays as it is."""
    from fastserve.config import Config
    from fastserve.server.tls import reload_certificate, tls_enabled

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    config = Config(ssl_context_factory=lambda config, default: context)
    assert tls_enabled(config)
    with caplog.at_level("INFO", logger="fastserve"):
        reload_certificate(context, config)
    assert "no certificate file to reload" in caplog.text
