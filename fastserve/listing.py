"""Directory listings (``--listing``, ``StaticFiles(listing=True)``): HTML or JSON.

A directory without an index answers a page listing what it holds, rendered with
``fastserve.templating.Jinja2Templates`` from ``listing.html`` (the one in
``fastserve/templates``, or the one in the ``templates`` directory given), or JSON for a
client whose ``Accept`` prefers ``application/json``. Everything that touches the file system
(reading the directory, a ``stat`` per entry, sorting, rendering) runs in one call of
``DirectoryListing.answer``, which callers run in a worker thread, one at a time per app
(``StaticFiles``); a rendered listing is reused for the open-file cache's validity while the
directory is unchanged, so a flood of listing requests costs one render per second, not one each.

What is listed is what would be served: no hidden names when dotfiles are denied
(``pathlookup.is_hidden``), no names a request path cannot spell (``pathlookup.split_url_path``:
a backslash, a drive-like ``C:`` name at the root), no symlinks that lead outside the root unless symlinks may be
followed, no broken links, sockets or devices, no names that are not UTF-8 (no URL reaches them).
At most ``max_entries`` entries are read per directory (``MAX_ENTRIES``, in the order the file
system gives them); the answer then says it is truncated.

The JSON shape (``application/json``)::

    {"path": "/docs/", "sort": "name", "order": "asc", "truncated": false,
     "entries": [{"name": "a b.txt", "type": "file", "size": 12,
                  "mtime": "2026-11-30T19:46:09Z", "mtime_epoch": 1796067969,
                  "href": "/docs/a%20b.txt"}, ...]}

``type`` is ``"file"`` or ``"directory"`` (whose ``size`` is null and ``href`` ends in ``/``);
``mtime`` is ISO 8601 in UTC, ``mtime_epoch`` whole seconds since the epoch; ``href`` is the
percent-encoded absolute path that serves the entry. Directories come first, whatever the order.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, quote

from fastserve._speedups.pathlookup import directory_path, is_hidden, is_within, resolve_path, split_url_path

PathLike = Union[str, "os.PathLike[str]"]

TEMPLATE_NAME = "listing.html"
PACKAGED_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MAX_ENTRIES = 10_000
# Rendered listings kept for reuse (``DirectoryListing.answer``): at most this many, of at most
# this many body bytes together; a larger one is not kept.
KEPT_LISTINGS = 32
KEPT_LISTING_BYTES = 8 * 1024 * 1024
MIN_ENCODED = 1024  # listings of at most this many bytes are sent unencoded, as compressed files are
SORT_KEYS = ("name", "size", "mtime")
ORDERS = ("asc", "desc")
HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Entry:
    """One listed name: a regular file or a directory, as ``stat`` (through links) saw it."""

    name: str
    is_dir: bool
    size: int  # bytes; 0 for a directory
    mtime: float  # seconds since the epoch


@dataclass(frozen=True)
class Rendered:
    """A rendered listing: the body, its content type, its strong entity-tag (quoted) and its
    content coding (None: identity)."""

    body: bytes
    content_type: str
    etag: str
    coding: Optional[str] = None


def gzip_encoded(rendered: Rendered) -> Rendered:
    """``rendered`` as ``gzip`` (RFC 9110 section 8.4.1.3), with an entity-tag of its own, when
    its body is over ``MIN_ENCODED`` bytes; else ``rendered`` itself."""
    if len(rendered.body) <= MIN_ENCODED:
        return rendered
    body = gzip.compress(rendered.body, compresslevel=6, mtime=0)
    return Rendered(body, rendered.content_type, rendered.etag[:-1] + '-gzip"', "gzip")


def listed_directories(roots: Sequence[str], url_parts: Tuple[str, ...], follow_symlink: bool) -> List[Tuple[str, str]]:
    """``(directory, root)`` for each root (absolute; real paths unless ``follow_symlink``) that
    holds the URL directory ``url_parts``, in order, as ``pathlookup.resolve_path`` finds it."""
    found = []
    for root in roots:
        try:
            located = resolve_path((root,), url_parts, follow_symlink)
        except OSError:
            continue
        if located is not None and stat.S_ISDIR(located[1].st_mode):
            found.append((located[0], root))
    return found


def read_entries(
    directories: Sequence[Tuple[str, str]],
    url_parts: Tuple[str, ...],
    *,
    dotfiles: bool,
    follow_symlink: bool,
    max_entries: int = MAX_ENTRIES,
) -> Tuple[List[Entry], bool]:
    """The entries of a URL directory, ``(entries, truncated)``.

    ``directories`` are ``(directory, root)`` pairs, the URL directory in each root holding it,
    first root first: a name in an earlier one hides the same name in a later one, as serving
    does. ``url_parts`` (``split_url_path``'s answer) decides which names are hidden.
    ``truncated`` is true when more than ``max_entries`` were found.
    """
    seen: Dict[str, Entry] = {}
    truncated = False
    for directory, root in directories:
        try:
            scanner = os.scandir(directory)
        except OSError:
            continue
        with scanner:
            for item in scanner:
                name = item.name
                if name in seen or not _served_name(url_parts, name, dotfiles):
                    continue
                if len(seen) >= max_entries:
                    truncated = True
                    break
                entry = _entry(item, root, follow_symlink)
                if entry is not None:
                    seen[name] = entry
    return list(seen.values()), truncated


def _served_name(url_parts: Tuple[str, ...], name: str, dotfiles: bool) -> bool:
    """Whether a request path can name ``name`` in the URL directory ``url_parts``: the rules of
    ``split_url_path`` (no backslash, no drive-like first segment) and, unless ``dotfiles``,
    ``is_hidden``."""
    parts = split_url_path("/".join(url_parts + (name,)))
    return parts is not None and len(parts) == len(url_parts) + 1 and (dotfiles or not is_hidden(parts))


def _entry(item: "os.DirEntry[str]", root: str, follow_symlink: bool) -> Optional[Entry]:
    """What ``item`` would be served as, or None when no URL serves it."""
    try:
        item.name.encode("utf-8")
    except UnicodeEncodeError:  # not UTF-8 on disk: no request path decodes to it
        return None
    try:
        if item.is_symlink() and not follow_symlink and not is_within(os.path.realpath(item.path), root):
            return None
        st = item.stat()
    except OSError:  # a broken link, or gone since the directory was read
        return None
    if stat.S_ISDIR(st.st_mode):
        return Entry(item.name, True, 0, st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        return Entry(item.name, False, st.st_size, st.st_mtime)
    return None


def sort_entries(entries: List[Entry], key: str, order: str) -> List[Entry]:
    """Directories first, then files, each sorted by ``key`` (name: case-insensitive; size:
    directories by name; mtime), ties broken by name, in ``order``."""

    def by_name(entry: Entry) -> Tuple[Any, ...]:
        return (entry.name.casefold(), entry.name)

    def sort_key(entry: Entry) -> Tuple[Any, ...]:
        if key == "size" and not entry.is_dir:
            return (entry.size,) + by_name(entry)
        if key == "mtime":
            return (entry.mtime,) + by_name(entry)
        return by_name(entry)

    reverse = order == "desc"
    directories = sorted((e for e in entries if e.is_dir), key=sort_key, reverse=reverse)
    files = sorted((e for e in entries if not e.is_dir), key=sort_key, reverse=reverse)
    return directories + files


def sort_from_query(query_string: bytes) -> Tuple[str, str]:
    """``(key, order)`` from ``?sort=name|size|mtime&order=asc|desc``; anything else is the
    default, ``("name", "asc")``."""
    key, order = "name", "asc"
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "sort" and value in SORT_KEYS:
            key = value
        elif name == "order" and value in ORDERS:
            order = value
    return key, order


def prefers_json(accept: Optional[str]) -> bool:
    """Whether ``Accept`` (RFC 9110 section 12.5.1) ranks ``application/json`` above
    ``text/html``; a tie, no field or a malformed one gives HTML."""
    if not accept:
        return False
    return _quality(accept, "application", "json") > _quality(accept, "text", "html")


def _quality(accept: str, kind: str, subtype: str) -> float:
    """The q of the most specific range in ``accept`` that matches ``kind/subtype`` (0: none)."""
    best_specificity, best_q = -1, 0.0
    for member in accept.split(","):
        media, *parameters = member.split(";")
        media_kind, _, media_subtype = media.strip().lower().partition("/")
        if media_kind == kind and media_subtype == subtype:
            specificity = 2
        elif media_kind == kind and media_subtype == "*":
            specificity = 1
        elif media_kind == "*" and media_subtype == "*":
            specificity = 0
        else:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if specificity > best_specificity:
            best_specificity, best_q = specificity, q
    return best_q


def _size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    return f"{size} B"  # not reached


def _utc(mtime: float) -> datetime:
    return datetime.fromtimestamp(int(mtime), tz=timezone.utc)


def url_base(root_path: str, url_parts: Tuple[str, ...]) -> str:
    """The percent-encoded absolute path of the listed directory, ending in ``/``."""
    return quote(root_path.rstrip("/"), safe="/") + directory_path(url_parts)


class DirectoryListing:
    """Renders listings with ``listing.html`` from ``templates`` (a directory, searched before
    the packaged one) for one ``StaticFiles``. ``max_entries``: per directory (``MAX_ENTRIES``)."""

    def __init__(self, templates: Optional[PathLike] = None, max_entries: int = MAX_ENTRIES) -> None:
        from fastserve.templating import Jinja2Templates

        directories: List[PathLike] = [PACKAGED_TEMPLATES]
        if templates is not None:
            directories.insert(0, templates)
        self.templates_dir = templates
        self.templates = Jinja2Templates(directory=directories)
        self.max_entries = max_entries
        # key -> (rendered, the listed directories' stamps, monotonic time it was rendered)
        self._kept: "OrderedDict[Tuple[Any, ...], Tuple[Rendered, Tuple[Any, ...], float]]" = OrderedDict()
        self._kept_bytes = 0
        self._kept_lock = threading.Lock()  # answer() may run in several threads at once

    def answer(
        self,
        directories: Sequence[Tuple[str, str]],
        url_parts: Tuple[str, ...],
        *,
        root_path: str,
        query_string: bytes,
        accept: Optional[str],
        dotfiles: bool,
        follow_symlink: bool,
        gzip_wanted: bool,
        valid_for: float,
    ) -> Rendered:
        """``render``'s listing (``gzip_encoded`` when ``gzip_wanted``), reused for ``valid_for``
        seconds (the open-file cache's ``--cache-valid``) while every listed directory still has
        the device, inode and modification time it had: a name added, removed or renamed shows at
        once, a file's new size or time within ``valid_for``. ``valid_for`` 0 renders every time.
        Blocking: call it in a worker thread. Reuse is what bounds a flood of listing requests:
        rendering 10,000 entries costs about 0.2 s of CPU, most of it holding the GIL."""
        key, order = sort_from_query(query_string)
        cache_key = (tuple(directories), url_parts, root_path, key, order, prefers_json(accept), gzip_wanted,
                     dotfiles, follow_symlink)
        stamps = _stamps(directories) if valid_for > 0 else None
        if stamps is not None:
            with self._kept_lock:
                kept = self._kept.get(cache_key)
                if kept is not None and kept[1] == stamps and time.monotonic() - kept[2] < valid_for:
                    self._kept.move_to_end(cache_key)
                    return kept[0]
        rendered_at = time.monotonic()
        rendered = self.render(directories, url_parts, root_path=root_path, query_string=query_string,
                               accept=accept, dotfiles=dotfiles, follow_symlink=follow_symlink)
        if gzip_wanted:
            rendered = gzip_encoded(rendered)
        if stamps is not None:
            self._keep(cache_key, (rendered, stamps, rendered_at))
        return rendered

    def _keep(self, cache_key: Tuple[Any, ...], kept: Tuple[Rendered, Tuple[Any, ...], float]) -> None:
        size = len(kept[0].body)
        if size > KEPT_LISTING_BYTES:
            return
        with self._kept_lock:
            old = self._kept.pop(cache_key, None)
            if old is not None:
                self._kept_bytes -= len(old[0].body)
            self._kept[cache_key] = kept
            self._kept_bytes += size
            while len(self._kept) > KEPT_LISTINGS or self._kept_bytes > KEPT_LISTING_BYTES:
                _, dropped = self._kept.popitem(last=False)
                self._kept_bytes -= len(dropped[0].body)

    def render(
        self,
        directories: Sequence[Tuple[str, str]],
        url_parts: Tuple[str, ...],
        *,
        root_path: str,
        query_string: bytes,
        accept: Optional[str],
        dotfiles: bool,
        follow_symlink: bool,
    ) -> Rendered:
        """Read, sort and render the listing of the URL directory ``url_parts`` (``read_entries``'
        ``directories``), as JSON when ``accept`` prefers it, else HTML. Blocking: call it in a
        worker thread. ``root_path`` (where the app is mounted) prefixes every link."""
        entries, truncated = read_entries(
            directories, url_parts, dotfiles=dotfiles, follow_symlink=follow_symlink, max_entries=self.max_entries
        )
        key, order = sort_from_query(query_string)
        entries = sort_entries(entries, key, order)
        base = url_base(root_path, url_parts)
        rows: List[Dict[str, Any]] = [
            {
                "name": entry.name,
                "type": "directory" if entry.is_dir else "file",
                "size": None if entry.is_dir else entry.size,
                "mtime": _utc(entry.mtime).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "mtime_epoch": int(entry.mtime),
                "href": base + quote(entry.name, safe="") + ("/" if entry.is_dir else ""),
            }
            for entry in entries
        ]
        path = root_path.rstrip("/") + "/" + "".join(part + "/" for part in url_parts)
        if prefers_json(accept):
            document = {"path": path, "sort": key, "order": order, "truncated": truncated, "entries": rows}
            body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return Rendered(body, JSON_TYPE, _etag(body))
        for row in rows:
            row["size_text"] = "" if row["size"] is None else _size_text(row["size"])
            row["mtime_text"] = row["mtime"].replace("T", " ").replace("Z", "")
        context = {
            "path": path,
            "breadcrumbs": self._breadcrumbs(root_path, url_parts),
            "parent": url_base(root_path, url_parts[:-1]) if url_parts else None,
            "entries": rows,
            "sort": key,
            "order": order,
            "sort_links": {
                column: "?sort=%s&order=%s" % (column, "desc" if column == key and order == "asc" else "asc")
                for column in SORT_KEYS
            },
            "truncated": truncated,
            "max_entries": self.max_entries,
        }
        body = self.templates.get_template(TEMPLATE_NAME).render(context).encode("utf-8")
        return Rendered(body, HTML_TYPE, _etag(body))

    @staticmethod
    def _breadcrumbs(root_path: str, url_parts: Tuple[str, ...]) -> List[Dict[str, str]]:
        crumbs = [{"name": root_path.rstrip("/") + "/", "href": url_base(root_path, ())}]
        for depth, part in enumerate(url_parts, 1):
            crumbs.append({"name": part, "href": url_base(root_path, url_parts[:depth])})
        return crumbs


def templates_problem(directory: PathLike) -> Optional[str]:
    """Why ``directory`` cannot replace the packaged template (no ``listing.html`` in it, or one
    Jinja2 cannot compile), or None when it can."""
    import jinja2

    if not os.path.isfile(os.path.join(directory, TEMPLATE_NAME)):
        return f"no {TEMPLATE_NAME} in it"
    try:
        DirectoryListing(directory).templates.get_template(TEMPLATE_NAME)
    except jinja2.TemplateError as exc:
        return f"{TEMPLATE_NAME} line {getattr(exc, 'lineno', '?')}: {exc}"
    return None


def _stamps(directories: Sequence[Tuple[str, str]]) -> Optional[Tuple[Any, ...]]:
    """``(device, inode, mtime_ns)`` of each listed directory, or None when one cannot be
    ``stat``'ed (nothing is reused then)."""
    try:
        return tuple((st.st_dev, st.st_ino, st.st_mtime_ns) for st in (os.stat(d) for d, _ in directories))
    except OSError:
        return None


def _etag(body: bytes) -> str:
    return '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
