"""Precompressed siblings (file.br / file.zst / file.gz) on the real server."""
import gzip

import httpx2


def make_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    text = b"body { color: red; }\n" * 200
    (site / "style.css").write_bytes(text)
    (site / "style.css.gz").write_bytes(gzip.compress(text))
    (site / "plain.txt").write_text("no siblings")
    return site, text


def test_gzip_sibling_served_to_clients_that_accept_it(tmp_path, start_server):
    site, text = make_site(tmp_path)
    server = start_server(site)
    with httpx2.Client(base_url=server.url, timeout=5) as client:
        compressed = client.get("/style.css", headers={"accept-encoding": "gzip"})
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.headers["vary"] == "Accept-Encoding"
        assert compressed.headers["content-type"] == "text/css; charset=utf-8"
        assert compressed.content == text  # httpx decodes it
        identity = client.get("/style.css", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in identity.headers
        assert identity.headers["vary"] == "Accept-Encoding"
        assert identity.content == text
        refused = client.get("/style.css", headers={"accept-encoding": "gzip;q=0"})
        assert "content-encoding" not in refused.headers
        assert refused.headers["etag"] != compressed.headers["etag"]
        etag = compressed.headers["etag"]
        not_modified = client.get("/style.css", headers={"accept-encoding": "gzip", "if-none-match": etag})
        assert not_modified.status_code == 304
        assert not_modified.headers["vary"] == "Accept-Encoding"
        plain = client.get("/plain.txt", headers={"accept-encoding": "gzip"})
        assert "vary" not in plain.headers and plain.text == "no siblings"


def test_no_precompressed_flag(tmp_path, start_server):
    site, text = make_site(tmp_path)
    server = start_server(site, "--no-precompressed")
    with httpx2.Client(base_url=server.url, timeout=5) as client:
        response = client.get("/style.css", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in response.headers
        assert response.content == text
