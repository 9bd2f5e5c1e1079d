"""REDbot (HTTP lint, ``pip install redbot``) against a real fastserve serving a small site.

    python tests/tools/redbot_check.py [--verbose] [--redbot-python PYTHON] [-- FASTSERVE FLAGS...]

Starts ``python -m fastserve SITE --listing`` (plus the flags given after ``--``) on a free
port of 127.0.0.1 over a site made in a temporary directory, and runs REDbot's full check
(its follow-up conditional, range and content-coding requests included) on: a plain file, a
fingerprinted file, a compressed answer (a ``.gz`` sibling, and one compressed on the fly), an
HTML page, a directory
listing (HTML, and JSON with ``Accept: application/json``), and the 404 page. Prints each
URL's findings by level (BAD, WARN, INFO, GOOD), the BAD and WARN ones spelled out
(``--verbose``: all of them). Exits 1 when any finding is BAD, 2 when REDbot is missing.
Not part of the test suite (REDbot is not a test dependency). REDbot is best kept in a venv of
its own (one of its dependencies installs a top-level ``tests`` package, which shadows this
repository's): ``python3 -m venv /tmp/redbot && /tmp/redbot/bin/pip install redbot``, then
``--redbot-python /tmp/redbot/bin/python``; fastserve runs with the interpreter running this.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from configparser import ConfigParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from server_helpers import free_port, wait_until_accepting  # noqa: E402
LEVELS = ("bad", "warning", "info", "good")


def build_site(root: Path) -> None:
    (root / "assets").mkdir()
    (root / "files" / "sub").mkdir(parents=True)
    script = "".join(f"function f{i}() {{ return {i}; }}\n" for i in range(400)).encode()
    (root / "plain.txt").write_bytes(b"Hello from fastserve.\n" * 20)
    (root / "assets" / "app.3f9a1c2b.js").write_bytes(script)
    styles = b"body { color: #333; }\n" * 200
    (root / "script.js").write_bytes(script.replace(b"function", b"const g = function"))
    (root / "styles.css").write_bytes(styles)
    (root / "styles.css.gz").write_bytes(gzip.compress(styles, mtime=0))
    (root / "index.html").write_bytes(
        b"<!doctype html><html lang=en><head><meta charset=utf-8><title>fastserve</title></head>"
        b"<body><p>Hello.</p></body></html>\n"
    )
    (root / "404.html").write_bytes(b"<!doctype html><title>404</title><p>Not here.</p>\n")
    (root / "files" / "a b.txt").write_bytes(b"a\n")
    (root / "files" / "sub" / "c.txt").write_bytes(b"c\n")


def check(url: str, headers: Optional[List[Tuple[str, str]]], redbot_python: str) -> List[Tuple[str, str]]:
    """REDbot's findings for ``url``: (level, summary) pairs, sub-findings included. Each check
    runs in a process of its own: REDbot's event loop (thor) serves one check per process."""
    command = [redbot_python, __file__, "--one", url, json.dumps(headers or [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return [("bad", f"REDbot failed: {done.stderr.strip().splitlines()[-1:]}")]
    return [tuple(pair) for pair in json.loads(done.stdout)]  # type: ignore[misc]


def check_here(url: str, headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    import thor
    from redbot.resource import HttpResource

    parser = ConfigParser()
    parser.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(parser["redbot"])
    resource.set_request(url, headers=[tuple(pair) for pair in headers])

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    resource.check()
    thor.run()
    if resource.fetch_error is not None:
        return [("bad", f"fetch failed: {resource.fetch_error.desc}")]
    found = []
    for note in resource.response.notes:
        found.append((note.level.value, note.summary))
        for subnote in note.subnotes:
            found.append((subnote.level.value, "  " + subnote.summary))
    return found


def main(argv: List[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(check_here(argv[1], json.loads(argv[2]))))
        return 0
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    verbose = "--verbose" in argv
    redbot_python = argv[argv.index("--redbot-python") + 1] if "--redbot-python" in argv else sys.executable
    if subprocess.run([redbot_python, "-c", "import redbot"], capture_output=True).returncode != 0:
        print(f"REDbot is not installed for {redbot_python}: pip install redbot", file=sys.stderr)
        return 2
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        build_site(site)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastserve", str(site), "--port", str(port), "--listing", *extra],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_accepting(port, proc)
            base = f"http://127.0.0.1:{port}"
            # The first request for an encoding starts it off the event loop (and is answered
            # unencoded); ask once and wait, so REDbot sees the compressed answer.
            for _ in range(50):
                with urllib.request.urlopen(urllib.request.Request(
                    base + "/script.js", headers={"Accept-Encoding": "gzip"}
                )) as answer:
                    if answer.headers.get("Content-Encoding") == "gzip":
                        break
                time.sleep(0.1)
            targets: List[Tuple[str, str, Optional[List[Tuple[str, str]]]]] = [
                ("plain file", "/plain.txt", None),
                ("fingerprinted file", "/assets/app.3f9a1c2b.js", None),
                ("compressed (.gz sibling)", "/styles.css", None),
                ("compressed on the fly", "/script.js", None),
                ("HTML page", "/", None),
                ("listing (HTML)", "/files/", None),
                ("listing (JSON)", "/files/", [("Accept", "application/json")]),
                ("404 page", "/missing", None),
            ]
            for label, path, headers in targets:
                findings = check(base + path, headers, redbot_python)
                counts: Dict[str, int] = Counter(level for level, _ in findings)
                bad += counts["bad"]
                summary = ", ".join(f"{counts[level]} {level.upper()}" for level in LEVELS)
                print(f"{label}: {path}: {summary}")
                for level, text in findings:
                    if verbose or level in ("bad", "warning"):
                        print(f"    [{level.upper()}] {text}")
        finally:
            proc.terminate()
            proc.wait(10)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
