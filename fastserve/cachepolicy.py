"""Which ``Cache-Control`` a static file is sent with, decided once per open-file cache entry.

``CachePolicy(max_age=60, rules=())`` answers ``policy(url_path, content_type)`` with the
field's value (bytes), or None for no field:

1. the first ``(glob, value)`` of ``rules`` that matches (``fnmatch``, case-sensitive; a glob
   with a ``/`` is matched against the whole URL path, ``/assets/*``, one without against the
   file's name, ``*.map``); an empty value sends no field;
2. HTML (``text/html``): ``no-cache``, so a deploy is seen at once (revalidated with the ETag);
3. a fingerprinted name (``is_fingerprinted``): ``public, max-age=31536000, immutable``;
4. anything else: ``public, max-age=<max_age>``.

RFC 9111 section 5.2 (the directives), RFC 8246 (``immutable``).
"""
from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from fastserve.config import Config

IMMUTABLE = b"public, max-age=31536000, immutable"
NO_CACHE = b"no-cache"
# Where a name is cut into parts: dots, dashes, underscores, tildes (app.3f9a1c2b.js, main-4KX7QZ2B.css).
_SEPARATORS = re.compile(r"[.\-_~]")


def is_fingerprinted(name: str) -> bool:
    """Whether file name ``name`` carries a content hash as one of its parts (extension aside).

    A hash part is 8 or more ASCII letters and digits that switch between letters and digits
    at least three times: hex (``3f9a1c2b``), base32 (``4KX7QZ2B``) and base64url hashes
    almost always do, words and versions (``bootstrap5``, ``ubuntu2204``, ``v1.2.3``,
    ``deadbeef``, ``components``) do not. A hash without digits (``BoRmjWcu``) is not
    recognised: such files get the default policy; a ``--cache-rule`` covers them.
    """
    stem, dot, _ = name.rpartition(".")
    for part in _SEPARATORS.split(stem if dot else name):
        if len(part) >= 8 and part.isascii() and part.isalnum() and _switches(part) >= 3:
            return True
    return False


def _switches(part: str) -> int:
    count = 0
    for i in range(1, len(part)):
        if part[i].isdigit() != part[i - 1].isdigit():
            count += 1
    return count


class CachePolicy:
    """``Cache-Control`` for static files; see the module's docstring.

    ``max_age``: seconds for files that are neither HTML nor fingerprinted (``--max-age``).
    ``rules``: ``(glob, value)`` pairs, first match wins (``--cache-rule GLOB=VALUE``).
    Raises ``ValueError`` for a negative ``max_age`` or a value holding CR, LF or NUL.
    """

    def __init__(self, max_age: int = 60, rules: Sequence[Tuple[str, str]] = ()) -> None:
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.max_age = max_age
        self.rules: List[Tuple[str, bool, Optional[bytes]]] = []
        for glob, value in rules:
            raw = value.strip().encode("latin-1")
            if any(c in raw for c in b"\r\n\0"):
                raise ValueError(f"the Cache-Control value for {glob!r} holds CR, LF or NUL")
            self.rules.append((glob, "/" in glob, raw or None))
        self.default = b"public, max-age=%d" % max_age

    @classmethod
    def from_config(cls, config: "Config") -> "CachePolicy":
        return cls(config.max_age, config.cache_rules)

    def __call__(self, url_path: str, content_type: bytes) -> Optional[bytes]:
        """The ``Cache-Control`` value for the file at ``url_path`` (``/assets/app.js``; a
        directory's index as ``/docs/index.html``), or None when none is to be sent."""
        name = posixpath.basename(url_path)
        for glob, whole_path, value in self.rules:
            if fnmatch.fnmatchcase(url_path if whole_path else name, glob):
                return value
        if content_type.startswith(b"text/html"):
            return NO_CACHE
        if is_fingerprinted(name):
            return IMMUTABLE
        return self.default

    def __repr__(self) -> str:
        return f"CachePolicy(max_age={self.max_age}, rules={[(g, v) for g, _, v in self.rules]!r})"
