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
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence, Tuple, Union

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


def _rule(rule: Union[Tuple[str, str], str]) -> Tuple[str, str]:
    """One of ``CachePolicy``'s ``rules`` as ``(glob, value)``."""
    if isinstance(rule, str):
        glob, sep, value = rule.partition("=")
        if not sep or not glob.strip():
            raise ValueError(f"the cache rule {rule!r} is not GLOB=VALUE")
        return glob.strip(), value
    if isinstance(rule, (tuple, list)) and len(rule) == 2 and all(isinstance(part, str) for part in rule):
        return rule[0], rule[1]
    raise TypeError(f"a cache rule is a (glob, value) pair of strings or 'GLOB=VALUE', not {rule!r}")


class CachePolicy:
    """``Cache-Control`` for static files; see the module's docstring.

    ``max_age``: seconds (a whole number) for files that are neither HTML nor fingerprinted
    (``--max-age``). ``rules``: ``(glob, value)`` pairs, first match wins, or ``"GLOB=VALUE"``
    strings as ``--cache-rule`` spells them (a dict ``{glob: value}`` keeps its order).
    Raises ``ValueError`` for a negative ``max_age``, a rule string without ``=``, or a value
    holding CR, LF or NUL; ``TypeError`` for a ``max_age`` that is no whole number (a string,
    a bool) or a rule that is neither a pair nor a string.
    """

    def __init__(self, max_age: int = 60, rules: Union[Sequence[Union[Tuple[str, str], str]], Mapping[str, str]] = (),
                 ) -> None:
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise TypeError(f"max_age must be a whole number of seconds, not {max_age!r}")
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.max_age = max_age
        self.rules: List[Tuple[str, bool, Optional[bytes]]] = []
        if isinstance(rules, str):
            raise TypeError(f"rules must be a list of (glob, value) pairs or 'GLOB=VALUE' strings, not {rules!r}")
        for glob, value in (rules.items() if isinstance(rules, Mapping) else map(_rule, rules)):
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
