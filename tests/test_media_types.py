"""Media types against nginx's: every suffix nginx's mime.types names gets nginx's type, or the
one decided here with its reason, whatever the host's tables say (``headers.WEB_MEDIA_TYPES``).

Python's ``mimetypes`` reads the host's files (/etc/mime.types), which a slim container lacks and
which differ between distributions: a suffix left to them went out as application/octet-stream
in one image and as something else in another (``.msm`` as ``model/vnd.gdl``). The tests ask with
``mimetypes`` emptied, so they hold the table alone.
"""
from __future__ import annotations

import mimetypes

import pytest

from fastserve._speedups.headers import clear_content_type_cache, content_type_for

# nginx 1.22's conf/mime.types: suffix -> type (its first type for a suffix named twice)
NGINX_MIME_TYPES = {
    "3gp": "video/3gpp", "3gpp": "video/3gpp", "7z": "application/x-7z-compressed", "ai": "application/postscript",
    "asf": "video/x-ms-asf", "asx": "video/x-ms-asf", "atom": "application/atom+xml", "avi": "video/x-msvideo",
    "avif": "image/avif", "bin": "application/octet-stream", "bmp": "image/x-ms-bmp", "cco": "application/x-cocoa",
    "crt": "application/x-x509-ca-cert", "css": "text/css", "deb": "application/octet-stream",
    "der": "application/x-x509-ca-cert", "dll": "application/octet-stream", "dmg": "application/octet-stream",
    "doc": "application/msword", "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "ear": "application/java-archive", "eot": "application/vnd.ms-fontobject", "eps": "application/postscript",
    "exe": "application/octet-stream", "flv": "video/x-flv", "gif": "image/gif", "hqx": "application/mac-binhex40",
    "htc": "text/x-component", "htm": "text/html", "html": "text/html", "ico": "image/x-icon",
    "img": "application/octet-stream", "iso": "application/octet-stream",
    "jad": "text/vnd.sun.j2me.app-descriptor", "jar": "application/java-archive",
    "jardiff": "application/x-java-archive-diff", "jng": "image/x-jng", "jnlp": "application/x-java-jnlp-file",
    "jpeg": "image/jpeg", "jpg": "image/jpeg", "js": "application/javascript", "json": "application/json",
    "kar": "audio/midi", "kml": "application/vnd.google-earth.kml+xml", "kmz": "application/vnd.google-earth.kmz",
    "m3u8": "application/vnd.apple.mpegurl", "m4a": "audio/x-m4a", "m4v": "video/x-m4v", "mid": "audio/midi",
    "midi": "audio/midi", "mml": "text/mathml", "mng": "video/x-mng", "mov": "video/quicktime",
    "mp3": "audio/mpeg", "mp4": "video/mp4", "mpeg": "video/mpeg", "mpg": "video/mpeg",
    "msi": "application/octet-stream", "msm": "application/octet-stream", "msp": "application/octet-stream",
    "odg": "application/vnd.oasis.opendocument.graphics", "odp": "application/vnd.oasis.opendocument.presentation",
    "ods": "application/vnd.oasis.opendocument.spreadsheet", "odt": "application/vnd.oasis.opendocument.text",
    "ogg": "audio/ogg", "pdb": "application/x-pilot", "pdf": "application/pdf",
    "pem": "application/x-x509-ca-cert", "pl": "application/x-perl", "pm": "application/x-perl",
    "png": "image/png", "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "prc": "application/x-pilot", "ps": "application/postscript", "ra": "audio/x-realaudio",
    "rar": "application/x-rar-compressed", "rpm": "application/x-redhat-package-manager",
    "rss": "application/rss+xml", "rtf": "application/rtf", "run": "application/x-makeself",
    "sea": "application/x-sea", "shtml": "text/html", "sit": "application/x-stuffit", "svg": "image/svg+xml",
    "svgz": "image/svg+xml", "swf": "application/x-shockwave-flash", "tcl": "application/x-tcl",
    "tif": "image/tiff", "tiff": "image/tiff", "tk": "application/x-tcl", "ts": "video/mp2t", "txt": "text/plain",
    "war": "application/java-archive", "wasm": "application/wasm", "wbmp": "image/vnd.wap.wbmp",
    "webm": "video/webm", "webp": "image/webp", "wml": "text/vnd.wap.wml", "wmlc": "application/vnd.wap.wmlc",
    "wmv": "video/x-ms-wmv", "woff": "font/woff", "woff2": "font/woff2", "xhtml": "application/xhtml+xml",
    "xls": "application/vnd.ms-excel", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xml": "text/xml", "xpi": "application/x-xpinstall", "xspf": "application/xspf+xml", "zip": "application/zip",
}

# Where fastserve sends another type than nginx, and why.
DECIDED = {
    "js": ("text/javascript", "RFC 9239 makes text/javascript the one JavaScript type"),
    "xml": ("application/xml", "RFC 7303: text/xml is an alias, application/xml the type"),
    "bmp": ("image/bmp", "the type IANA registers for BMP (nginx: image/x-ms-bmp)"),
    "ico": ("image/vnd.microsoft.icon", "the type IANA registers for ICO (nginx: image/x-icon)"),
    "m4a": ("audio/mp4", "RFC 4337's type for MPEG-4 audio (nginx: audio/x-m4a)"),
    "rar": ("application/vnd.rar", "the type IANA registers for RAR (nginx: application/x-rar-compressed)"),
    "asf": ("application/vnd.ms-asf", "the type IANA registers for ASF (nginx: video/x-ms-asf)"),
    "swf": ("application/vnd.adobe.flash.movie", "the type IANA registers for SWF"),
    "mml": ("application/mathml+xml", "the type IANA registers for MathML (nginx: text/mathml)"),
    "prc": ("model/prc", "the type IANA registers for PRC 3D models (nginx: Palm's application/x-pilot)"),
    "deb": ("application/vnd.debian.binary-package", "the type IANA registers for Debian packages"),
    "pem": ("application/pem-certificate-chain", "RFC 8555's type for a PEM certificate chain"),
    "svgz": ("application/gzip", "a .svgz is a gzip stream and is sent as it is, without Content-Encoding: "
                                 "image/svg+xml would say its bytes are SVG (RFC 9110 section 8.3)"),
}


@pytest.fixture
def no_host_tables(monkeypatch):
    """``mimetypes`` knowing nothing, as on a host without /etc/mime.types and with an empty
    built-in table: what is answered comes from fastserve's own table."""
    monkeypatch.setattr(mimetypes, "guess_type", lambda url, strict=True: (None, None))
    clear_content_type_cache()
    yield
    clear_content_type_cache()


@pytest.mark.parametrize("suffix", sorted(NGINX_MIME_TYPES))
def test_each_suffix_nginx_names_gets_nginx_type_or_the_decided_one(suffix, no_host_tables):
    wanted = DECIDED[suffix][0] if suffix in DECIDED else NGINX_MIME_TYPES[suffix]
    for name in (f"f.{suffix}", f"dir/F.{suffix.upper()}"):
        assert content_type_for(name).split(";")[0] == wanted, name


def test_every_decision_names_a_suffix_nginx_names_otherwise():
    for suffix, (ours, _) in DECIDED.items():
        assert NGINX_MIME_TYPES[suffix] != ours, suffix


def test_text_types_carry_a_charset_and_others_none(no_host_tables):
    assert content_type_for("f.htc") == "text/x-component; charset=utf-8"
    assert content_type_for("f.exe") == "application/octet-stream"
    assert content_type_for("logo.svgz") == "application/gzip"
