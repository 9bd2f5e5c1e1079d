"""On-the-fly compression, computed once (``fastserve.compression``, ``staticanswer.decide``).

Negotiation and the encoded cache are tested in-process, bytes in and bytes out, on both request
readers; one real server checks what a client sees on the wire; a subprocess checks the codings
a missing library takes away.
"""
from __future__ import annotations

import asyncio
import gzip
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import brotli
import pytest
import zstandard

from fastserve._speedups.filecache import FileCache
from fastserve._speedups.headers import IDENTITY, NONE_ACCEPTABLE, negotiate_coding
from fastserve._speedups.requesthead import RequestHead
from fastserve._speedups.staticanswer import decide
from fastserve.compression import EncodedCache, is_compressible
from inprocess import call_asgi, request
from server_helpers import RawConnection, ServerProcess

BR, ZSTD, GZIP = 0, 1, 2
ALL = 0b111


def script(size: int, seed: int = 1) -> bytes:
    """JavaScript-looking text of ``size`` bytes that compresses well, different per seed."""
    rng = random.Random(seed)
    words = ["const", "function", "return", "value", "fastserve", "=>", "{", "}", "(", ")", ";", "\n"]
    out = []
    total = 0
    while total < size:
        word = rng.choice(words) + " "
        out.append(word)
        total += len(word)
    return "".join(out).encode()[:size]


DECODE = {"br": brotli.decompress, "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
          "gzip": gzip.decompress}
APP = script(16 * 1024)  # worth encoding; brotli 11 takes 20 ms on it (90 ms on 64 KiB)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "app.js").write_bytes(APP)
    (root / "tiny.js").write_bytes(APP[:1024])  # 1 KiB: sent as it is
    (root / "just-over.css").write_bytes(APP[:1025])
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4096))
    (root / "font.woff2").write_bytes(bytes(4096))
    (root / "noise.txt").write_bytes(random.Random(7).randbytes(8192))  # does not compress
    (root / "index.html").write_bytes(b"<p>" + APP[:3000] + b"</p>")
    return root


# -- negotiation (RFC 9110 section 12.5.3) ------------------------------------------------------


@pytest.mark.parametrize("value,offered,expected", [
    (None, ALL, IDENTITY),                                   # no field: unencoded
    (b"", ALL, IDENTITY),                                    # empty: only identity
    (b"br, gzip", ALL, BR),
    (b"gzip, br", ALL, BR),                                  # equal weights: the server's order
    (b"gzip, zstd", ALL, ZSTD),
    (b"gzip;q=0.9, br;q=0.5", ALL, GZIP),                    # the higher weight wins
    (b"x-gzip", ALL, GZIP),                                  # RFC 9110 section 8.4.1.3
    (b"GZIP", ALL, GZIP),
    (b"br;q=0, gzip", ALL, GZIP),                            # q=0 refuses
    (b"*", ALL, BR),
    (b"*;q=0.5, gzip", ALL, GZIP),
    (b"*, br;q=0", ALL, ZSTD),
    (b"br, gzip", 0b100, GZIP),                              # only what is offered
    (b"br", 0b100, IDENTITY),                                # nothing offered accepted: unencoded
    (b"deflate, compress", ALL, IDENTITY),
    (b"gzip;q=0.5, identity", ALL, IDENTITY),                # identity weighted higher
    (b"gzip, identity;q=0.5", ALL, GZIP),
    (b"gzip, identity", ALL, GZIP),                          # a tie goes to the encoding
    (b"identity;q=0", ALL, NONE_ACCEPTABLE),                 # refuses the only acceptable one
    (b"identity;q=0, gzip", ALL, GZIP),
    (b"*;q=0", ALL, NONE_ACCEPTABLE),
    (b"*;q=0, identity", ALL, IDENTITY),
    (b"*;q=0, br", 0b100, NONE_ACCEPTABLE),
    (b"identity;q=0", 0, NONE_ACCEPTABLE),
    (b"gzip;q=abc, br", ALL, BR),                            # a malformed member is skipped
])
def test_negotiate_coding(value, offered, expected):
    assert negotiate_coding(value, offered) == expected


def test_compressible_types():
    for kind in (b"text/css; charset=utf-8", b"text/javascript", b"application/json", b"application/xml",
                 b"image/svg+xml", b"application/wasm", b"font/ttf", b"font/otf", b"application/manifest+json",
                 b"application/vnd.api+json", b"image/vnd.microsoft.icon", b"image/bmp"):
        assert is_compressible(kind), kind
    for kind in (b"image/png", b"image/jpeg", b"font/woff", b"font/woff2", b"application/zip",
                 b"application/gzip", b"video/mp4", b"application/octet-stream", b"image/webp", b"audio/mpeg"):
        assert not is_compressible(kind), kind


# -- decide(): the representation and its validators ----------------------------------------------


def ask(entry, accept_encoding=None, method=b"GET", **fields):
    head = RequestHead(method)
    if accept_encoding is not None:
        head.set(b"accept-encoding", accept_encoding)
    for name, value in fields.items():
        head.set(name.replace("_", "-").encode(), value)
    answer = decide(entry, head)
    return answer.status, dict(answer.fields), answer.body


class HeldEncodings:
    """Holds ``encoder``'s encodings back until ``release()``: a test that looks at an answer given
    while an encoding is being made decides when it is made, rather than betting that the worker
    thread (20 ms of brotli) is still busy when it asks (on a loaded machine the thread finished
    first and the answer was already encoded)."""

    def __init__(self, encoder: EncodedCache) -> None:
        self.released = threading.Event()
        made = dict(encoder.encoders)

        def held(index):
            def encode(data: bytes, strong: bool) -> bytes:
                assert self.released.wait(10), "the test never released the encodings"
                return made[index](data, strong)
            return encode

        encoder.encoders = {index: held(index) for index in made}

    def release(self) -> None:
        self.released.set()


def test_each_coding_decodes_to_the_file_with_its_own_etag(site):
    cache = FileCache([site], encoder=EncodedCache())
    entry = cache.lookup("/app.js")
    status, identity, body = ask(entry, b"identity")
    assert status == 200 and body == APP and identity[b"vary"] == b"Accept-Encoding"
    assert identity[b"accept-ranges"] == b"bytes" and b"content-encoding" not in identity
    etags = {identity[b"etag"]}
    for coding in ("br", "zstd", "gzip"):
        status, fields, body = ask(entry, coding.encode())
        assert status == 200 and fields[b"content-encoding"] == coding.encode()
        assert DECODE[coding](body) == APP and int(fields[b"content-length"]) == len(body) < len(APP) // 2
        assert fields[b"vary"] == b"Accept-Encoding" and b"accept-ranges" not in fields
        assert fields[b"etag"] == identity[b"etag"][:-1] + b"-" + coding.encode() + b'"'
        assert fields[b"last-modified"] == identity[b"last-modified"]
        etags.add(fields[b"etag"])
    assert len(etags) == 4


def test_conditional_head_and_range_follow_the_chosen_representation(site):
    cache = FileCache([site], encoder=EncodedCache())
    entry = cache.lookup("/app.js")
    br_etag = ask(entry, b"br")[1][b"etag"]
    gzip_etag = ask(entry, b"gzip")[1][b"etag"]
    # 304 for the representation the validator names, a full answer for another one
    status, fields, body = ask(entry, b"br, gzip", if_none_match=br_etag)
    assert status == 304 and fields[b"etag"] == br_etag and fields[b"vary"] == b"Accept-Encoding" and body == b""
    status, fields, _ = ask(entry, b"gzip", if_none_match=br_etag)
    assert status == 200 and fields[b"etag"] == gzip_etag
    assert ask(entry, b"gzip", if_none_match=gzip_etag)[0] == 304
    assert ask(entry, None, if_none_match=br_etag)[0] == 200  # the unencoded one has its own
    status, fields, _ = ask(entry, b"br", if_match=gzip_etag)
    assert status == 412 and fields[b"vary"] == b"Accept-Encoding"
    assert ask(entry, None, if_match=gzip_etag)[1][b"vary"] == b"Accept-Encoding"
    # HEAD: the encoded representation's fields, no body
    status, fields, body = ask(entry, b"br", method=b"HEAD")
    assert status == 200 and body == b"" and fields[b"content-encoding"] == b"br"
    assert fields[b"content-length"] == b"%d" % len(ask(entry, b"br")[2])
    # Range on an encoded representation: the whole of it, 200 (as for precompressed siblings)
    for range_value in (b"bytes=0-9", b"bytes=0-1,5-9", b"bytes=999999-"):
        status, fields, body = ask(entry, b"br", range=range_value)
        assert status == 200 and b"content-range" not in fields and brotli.decompress(body) == APP
    status, fields, body = ask(entry, b"br", range=b"bytes=0-9", if_range=br_etag)
    assert status == 200 and brotli.decompress(body) == APP
    status, fields, body = ask(entry, b"identity", range=b"bytes=0-9")
    assert status == 206 and body == APP[:10] and fields[b"vary"] == b"Accept-Encoding"


def test_identity_refused(site):
    cache = FileCache([site], encoder=EncodedCache())
    status, fields, body = ask(cache.lookup("/app.js"), b"identity;q=0")
    assert status == 406 and body == b"Not Acceptable" and fields[b"vary"] == b"Accept-Encoding"
    assert ask(cache.lookup("/app.js"), b"identity;q=0", method=b"HEAD")[0] == 406
    status, fields, body = ask(cache.lookup("/app.js"), b"*;q=0, gzip")
    assert status == 200 and gzip.decompress(body) == APP
    # a file that has only one representation is sent as it is
    for path in ("/photo.png", "/tiny.js"):
        status, fields, _ = ask(cache.lookup(path), b"identity;q=0")
        assert status == 200 and b"vary" not in fields
    # a file whose encodings are not worth it: identity, or 406 if refused
    assert ask(cache.lookup("/noise.txt"), b"br")[1].get(b"content-encoding") is None
    assert ask(cache.lookup("/noise.txt"), b"br, identity;q=0")[0] == 406


def test_what_is_compressed(site):
    cache = FileCache([site], encoder=EncodedCache(max_file=8 * 1024))
    assert ask(cache.lookup("/just-over.css"), b"gzip")[1][b"content-encoding"] == b"gzip"
    for path in ("/tiny.js", "/photo.png", "/font.woff2", "/app.js"):  # app.js: above max_file
        status, fields, _ = ask(cache.lookup(path), b"br, gzip")
        assert status == 200 and b"content-encoding" not in fields and b"vary" not in fields, path
    assert FileCache([site]).lookup("/index.html").representations is None  # no encoder: off
    only_gzip = FileCache([site], encoder=EncodedCache(codings=("gzip",)))
    assert ask(only_gzip.lookup("/app.js"), b"br, zstd, gzip")[1][b"content-encoding"] == b"gzip"
    with pytest.raises(ValueError):
        EncodedCache(codings=("deflate",))


def test_precompressed_siblings_win_over_compression(site):
    (site / "app.js.gz").write_bytes(gzip.compress(APP, mtime=0))
    encoder = EncodedCache()
    cache = FileCache([site], precompressed=True, encoder=encoder)
    entry = cache.lookup("/app.js")
    status, fields, body = ask(entry, b"br, gzip")
    assert fields[b"content-encoding"] == b"gzip" and body == (site / "app.js.gz").read_bytes()
    assert ask(entry, b"br")[1].get(b"content-encoding") is None  # no sibling for it: unencoded
    assert len(encoder) == 0


def test_encoded_once_per_file_version_and_never_stale(site):
    encoder = EncodedCache()
    cache = FileCache([site], valid_for=0, encoder=encoder)
    for _ in range(5):
        assert brotli.decompress(ask(cache.lookup("/app.js"), b"br")[2]) == APP
    assert encoder.encoded == 1
    cache.clear()  # the file cache forgets the entry; the encoding is kept for the same version
    assert brotli.decompress(ask(cache.lookup("/app.js"), b"br")[2]) == APP and encoder.encoded == 1
    changed = script(len(APP), seed=2)
    (site / "app.js").write_bytes(changed)
    os.utime(site / "app.js", ns=(1, 1))  # a new version, whatever the clock's resolution
    status, fields, body = ask(cache.lookup("/app.js"), b"br")
    assert brotli.decompress(body) == changed and encoder.encoded == 2
    # a file that does not compress is tried once per version too
    for _ in range(3):
        ask(cache.lookup("/noise.txt"), b"br")
    assert encoder.encoded == 3


def test_the_encoded_cache_is_bounded(site):
    for i in range(40):
        (site / f"module{i}.js").write_bytes(script(16 * 1024, seed=i))
    one = len(gzip.compress(script(16 * 1024, seed=0), 9))
    budget = one * 10
    encoder = EncodedCache(max_bytes=budget, codings=("gzip",))
    cache = FileCache([site], encoder=encoder)
    hot = cache.lookup("/module0.js")
    for i in range(40):
        assert ask(hot, b"gzip")[1][b"content-encoding"] == b"gzip"  # answered: kept through the sweeps
        assert gzip.decompress(ask(cache.lookup(f"/module{i}.js"), b"gzip")[2]) == script(16 * 1024, seed=i)
        assert encoder.held_bytes <= budget
    assert encoder.evictions >= 25 and len(encoder) <= 11
    assert hot.representations[GZIP] is not None
    evicted = cache.lookup("/module1.js")
    assert evicted.representations[GZIP] is None  # let go: made again when asked for
    assert ask(evicted, b"gzip")[1][b"content-encoding"] == b"gzip"
    # an encoding larger than the whole budget is never kept: the file goes unencoded
    small = EncodedCache(max_bytes=1000, codings=("br",))
    entry = FileCache([site], encoder=small).lookup("/app.js")
    assert ask(entry, b"br")[1].get(b"content-encoding") is None and small.held_bytes <= 1000


# -- off the event loop: the first answers are unencoded, or wait when the client refuses that ------


def test_encoding_is_made_off_the_loop_and_a_refusing_client_waits(site, serve):
    server = serve(site)
    held = HeldEncodings(server.state.cache.encoder)
    client = server.open()

    async def send(data: bytes) -> None:  # as the server does: inside the running loop
        client.heads.append(False)
        client.conn.data_received(data)

    server.loop.run_until_complete(send(request("GET", "/app.js", [("Accept-Encoding", "br")])))
    first = client.parsed()[-1]
    assert first.header("content-encoding") is None and first.body == APP  # while it is made
    assert first.header("vary") == "Accept-Encoding"
    held.release()
    second = client.request("GET", "/app.js", [("Accept-Encoding", "br")])  # sent after it finished
    assert second.header("content-encoding") is None or brotli.decompress(second.body) == APP
    server.settle()
    pipelined = request("GET", "/index.html", [("Accept-Encoding", "identity;q=0, gzip")])
    pipelined += request("GET", "/tiny.js")
    done = len(client.parsed())
    server.loop.run_until_complete(send(pipelined))
    client.heads.append(False)
    assert len(client.parsed()) == done  # both wait: the first for its encoding, the second behind it
    for _ in range(100):
        server.settle()
        if len(client.parsed()) == done + 2:
            break
        server.loop.run_until_complete(asyncio.sleep(0.01))
    waited, after = client.parsed()[-2:]
    assert waited.status == 200 and waited.header("content-encoding") == "gzip"
    assert gzip.decompress(waited.body) == (site / "index.html").read_bytes()
    assert after.status == 200 and after.body == APP[:1024]  # order kept behind the wait


def test_staticfiles_waits_too(site):
    from fastserve.staticfiles import StaticFiles

    app = StaticFiles(directory=site, compress=True)
    response = call_asgi(app, "GET", "/app.js", [("Accept-Encoding", "identity;q=0, zstd")])
    assert response.status == 200 and response.header("content-encoding") == "zstd"
    assert DECODE["zstd"](response.body) == APP
    plain = call_asgi(StaticFiles(directory=site), "GET", "/app.js", [("Accept-Encoding", "br")])
    assert plain.header("content-encoding") is None and plain.header("vary") is None  # off by default


def test_compress_off(site, serve):
    server = serve(site, compress="off")
    response = server.open().request("GET", "/app.js", [("Accept-Encoding", "br, gzip")])
    assert response.header("content-encoding") is None and response.header("vary") is None


# -- a real server ---------------------------------------------------------------------------------


def test_on_the_wire(site, tmp_path):
    with ServerProcess(site, ["--cache-valid", "0"], log_path=tmp_path / "log") as server:
        server.wait_ready()
        with RawConnection(server.port) as conn:
            def get(headers, method="GET"):
                conn.send(request(method, "/app.js", headers))
                return conn.read_response(head=method == "HEAD")

            identity = get([])
            assert identity.status == 200 and identity.body == APP and identity.header("vary") == "Accept-Encoding"
            answers = {}
            for coding in ("br", "zstd", "gzip"):
                for _ in range(250):  # the first answers may be unencoded while the encoding is made
                    answer = get([("Accept-Encoding", coding)])
                    if answer.header("content-encoding") == coding:
                        break
                    time.sleep(0.02)
                assert answer.header("content-encoding") == coding
                assert DECODE[coding](answer.body) == APP and answer.header("vary") == "Accept-Encoding"
                assert get([("Accept-Encoding", coding), ("If-None-Match", answer.header("etag"))]).status == 304
                head = get([("Accept-Encoding", coding)], "HEAD")
                assert head.header("content-length") == str(len(answer.body)) and head.body == b""
                ranged = get([("Accept-Encoding", coding), ("Range", "bytes=0-9")])
                assert ranged.status == 200 and ranged.body == answer.body
                answers[coding] = answer
            assert len({a.header("etag") for a in answers.values()} | {identity.header("etag")}) == 4
            refused = get([("Accept-Encoding", "identity;q=0, gzip;q=0.5, br;q=0.9")])
            assert refused.header("content-encoding") == "br"
            assert get([("Accept-Encoding", "identity;q=0")]).status == 406
            changed = script(len(APP), seed=3)
            (site / "app.js").write_bytes(changed)
            os.utime(site / "app.js", ns=(1, 1))
            for _ in range(250):  # unencoded while the new version's encoding is made
                answer = get([("Accept-Encoding", "br")])
                if answer.header("content-encoding") == "br":
                    break
                assert answer.body == changed  # never the old version
                time.sleep(0.02)
            assert brotli.decompress(answer.body) == changed


# -- a library that is not installed ----------------------------------------------------------------


def test_missing_libraries_are_not_offered_and_said_once(site):
    code = textwrap.dedent(f"""
        import logging, sys
        sys.modules["brotli"] = None          # as if not installed
        sys.modules["zstandard"] = None
        sys.modules["compression.zstd"] = None
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from fastserve._speedups.requesthead import RequestHead
        from fastserve._speedups.staticanswer import decide
        from fastserve.server.serve import _report_compression
        from fastserve.staticfiles import StaticFiles
        app = StaticFiles(directory={str(site)!r}, compress=True)
        _report_compression(app)
        cache = app.build_file_cache(0)
        app.build_file_cache(0)
        head = RequestHead(b"GET")
        head.set(b"accept-encoding", b"br, zstd, gzip")
        answer = decide(cache.lookup("/app.js"), head)
        print(dict(answer.fields).get(b"content-encoding"))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b'gzip'"
    lines = [line for line in done.stderr.splitlines() if "not installed" in line]
    assert lines == ["compression: br (brotli), zstd (zstandard) not installed, not offered; "
                     "pip install 'fastserve[compress]'"]


def test_metrics_count_encoded_answers_and_bytes_saved(site):
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from fastserve._speedups.staticanswer import compression_totals
    from fastserve.server.metrics import Metrics, SharedCounters

    cache = FileCache([site], encoder=EncodedCache())
    entry = cache.lookup("/app.js")
    encoded = ask(entry, b"br")[2]
    answers, saved = compression_totals()
    ask(entry, b"br")
    ask(entry, b"br", range=b"bytes=0-9")
    ask(entry, b"br", method=b"HEAD")  # no body: nothing saved
    ask(entry, b"br", if_none_match=b"*")  # 304
    ask(entry, b"identity")
    assert compression_totals() == (answers + 2, saved + 2 * (len(APP) - len(encoded)))
    metrics = Metrics(SharedCounters(1), 0)
    metrics.update(0, cache)
    samples = {sample.name: sample.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               for sample in family.samples}
    assert samples["fastserve_compressed_responses_total"] == answers + 2
    assert samples["fastserve_compression_saved_bytes_total"] == saved + 2 * (len(APP) - len(encoded))


def test_a_304_for_an_encoding_does_not_wait_for_it(site):
    """After a restart (or an eviction) the encoding is made again, but a client revalidating the
    one it holds gets its 304 at once: the encoding's validators are known before its bytes."""
    br_etag = ask(FileCache([site], encoder=EncodedCache()).lookup("/app.js"), b"br")[1][b"etag"]

    async def revalidate():
        encoder = EncodedCache()
        held = HeldEncodings(encoder)
        entry = FileCache([site], encoder=encoder).lookup("/app.js")  # a fresh process's cache
        try:
            first = ask(entry, b"br", if_none_match=br_etag)
            second = ask(entry, b"br", if_none_match=b'"other"')
            refused = ask(entry, b"br, identity;q=0", if_none_match=br_etag)
            assert entry.representations[BR] is None  # all three asked while it was being made
        finally:
            held.release()
        await encoder.waiter(entry, BR)
        return entry, first, second, refused

    entry, first, second, refused = asyncio.run(revalidate())
    status, fields, body = first
    assert status == 304 and fields[b"etag"] == br_etag and fields[b"vary"] == b"Accept-Encoding" and body == b""
    assert second[0] == 200 and b"content-encoding" not in second[1]  # unencoded while it is made
    assert refused[0] == 304
    assert entry.representations[BR].etag == br_etag  # the validators it was answered with are the made one's


def test_an_encoding_does_not_keep_the_entries_it_filled_alive(site):
    """The open-file cache's bounds hold: an entry it let go is not kept (with its body) by the
    encoding made for it, which the next entry for the same file version takes over."""
    import gc
    import weakref

    encoder = EncodedCache()
    cache = FileCache([site], encoder=encoder, max_entries=1)
    first = cache.lookup("/app.js")
    ask(first, b"br")
    gone = weakref.ref(first)
    cache.lookup("/index.html")  # pushes /app.js out of the file cache
    del first
    gc.collect()
    assert gone() is None
    again = cache.lookup("/app.js")
    assert again.representations[BR] is not None and encoder.encoded == 1


def test_an_encoding_outlives_the_event_loop_that_asked_for_it(site):
    """A TestClient without ``with`` runs each request on a loop of its own: an encoding asked
    for on one loop, which then closed, still lands, and a later loop can wait for it."""
    from fastserve.staticfiles import StaticFiles

    app = StaticFiles(directory=site, compress=True)
    first = call_asgi(app, "GET", "/app.js", [("Accept-Encoding", "br")])  # on a loop that then closes
    assert first.status == 200
    waited = call_asgi(app, "GET", "/app.js", [("Accept-Encoding", "br, identity;q=0")])
    assert waited.header("content-encoding") == "br" and brotli.decompress(waited.body) == APP
    assert call_asgi(app, "GET", "/app.js", [("Accept-Encoding", "br")]).header("content-encoding") == "br"


def test_the_flags(monkeypatch, site):
    from fastserve.cli import config_from_args
    from fastserve.server.app_loader import load_app
    from fastserve.server.worker import static_cache_for

    config = config_from_args([str(site), "--compress-max-file", "5000", "--compress-bytes", "100000"])
    assert (config.compress, config.compress_max_file, config.compress_bytes) == ("on", 5000, 100000)
    encoder = static_cache_for(load_app(config), config).encoder
    assert (encoder.max_file, encoder.max_bytes) == (5000, 100000)
    off = config_from_args([str(site), "--compress", "off"])
    assert static_cache_for(load_app(off), off).encoder is None
    monkeypatch.setenv("FASTSERVE_COMPRESS", "off")
    assert config_from_args([str(site)]).compress == "off"
