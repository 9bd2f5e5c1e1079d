"""TLS: the server's ``ssl.SSLContext`` from the ``--ssl-*`` flags, and its reload on SIGHUP.

Under TLS the connection never writes to the socket itself (no ``send``, no ``os.sendfile``):
every byte goes through the TLS transport, file bodies in bounded chunks under its flow
control. ALPN offers ``http/1.1`` only. SIGHUP re-reads the certificate and key into the same
context: handshakes from then on present the new certificate, open connections keep theirs.
"""
from __future__ import annotations

import logging
import os
import ssl
from typing import Optional

from fastserve.config import Config

logger = logging.getLogger("fastserve")


class TlsConfigError(Exception):
    """The ``--ssl-*`` flags do not make a usable context; the message says why."""


def tls_enabled(config: Config) -> bool:
    return config.ssl_certfile is not None or config.ssl_context_factory is not None


# uvicorn's --ssl-version takes the ``ssl.PROTOCOL_*`` numbers: the TLS version each pins (None:
# TLS 1.2 and newer, fastserve's default). Others (TLS 1.0 and 1.1, RFC 8996) are refused with the
# other usage errors (``Config.problems``: ``CHOICES["ssl_version"]`` are these keys).
PROTOCOL_VERSIONS = {
    2: ("PROTOCOL_TLS", None),
    5: ("PROTOCOL_TLSv1_2", ssl.TLSVersion.TLSv1_2),
    17: ("PROTOCOL_TLS_SERVER", None),
}


def make_context(config: Config) -> Optional[ssl.SSLContext]:
    """The server context for ``config`` (None without ``--ssl-certfile`` or
    ``ssl_context_factory``); raises ``TlsConfigError``.

    ``config.ssl_context_factory``, as ``uvicorn.run`` takes it, is called as
    ``factory(config, default)`` and returns the ``ssl.SSLContext`` to serve with; ``default()``
    builds the context the ``--ssl-*`` settings describe (it needs ``ssl_certfile``). It is
    called once in each process that serves, and once before the workers start, where a
    failure stops the start.
    """
    factory = config.ssl_context_factory
    if factory is None:
        return _context_from_settings(config)

    def default() -> ssl.SSLContext:
        if config.ssl_certfile is None:
            raise TlsConfigError("ssl_context_factory asked for the default context, which needs ssl_certfile")
        context = _context_from_settings(config)
        assert context is not None
        return context

    context = factory(config, default)
    if not isinstance(context, ssl.SSLContext):
        raise TlsConfigError(f"ssl_context_factory returned {type(context).__name__}, not an ssl.SSLContext")
    return context


def _context_from_settings(config: Config) -> Optional[ssl.SSLContext]:
    if config.ssl_certfile is None:  # (a key without it is a usage error: Config.problems)
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _, only = PROTOCOL_VERSIONS[config.ssl_version]  # one of CHOICES["ssl_version"] (Config.problems)
    context.minimum_version = only or ssl.TLSVersion.TLSv1_2
    if only is not None:
        context.maximum_version = only
    context.set_alpn_protocols(["http/1.1"])
    try:
        if config.ssl_ciphers:
            context.set_ciphers(config.ssl_ciphers)
        if config.ssl_ca_certs:
            _must_exist("--ssl-ca-certs", config.ssl_ca_certs)
            context.load_verify_locations(config.ssl_ca_certs)
        context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"TLS settings: {exc}") from None
    load_certificate(context, config)
    return context


def load_certificate(context: ssl.SSLContext, config: Config) -> None:
    """(Re)load the certificate chain and key into ``context``; raises ``TlsConfigError``."""
    assert config.ssl_certfile is not None
    _must_exist("--ssl-certfile", config.ssl_certfile)
    if config.ssl_keyfile is not None:
        _must_exist("--ssl-keyfile", config.ssl_keyfile)
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot load the certificate {config.ssl_certfile!r}: {exc}") from None


def reload_certificate(context: ssl.SSLContext, config: Config) -> None:
    """SIGHUP: load the certificate files again; on failure keep serving the old one and say why.
    A context from ``ssl_context_factory`` with no ``ssl_certfile`` has no files to re-read."""
    if config.ssl_certfile is None:
        logger.info("worker %d: SIGHUP: no certificate file to reload (the context came from ssl_context_factory)",
                    os.getpid())
        return
    try:
        load_certificate(context, config)
    except TlsConfigError as exc:
        logger.error("worker %d: certificate not reloaded, the old one stays: %s", os.getpid(), exc)
        return
    logger.info("worker %d: certificate reloaded from %s", os.getpid(), config.ssl_certfile)


def _must_exist(flag: str, path: str) -> None:
    if not os.path.isfile(path):
        raise TlsConfigError(f"{flag} {path!r} does not exist")
