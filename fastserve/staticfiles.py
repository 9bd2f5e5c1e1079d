"""``StaticFiles``: the ASGI app that serves a directory, a drop-in for Starlette's.

The rules (safe lookup, validators, 304/412, Range, precompressed siblings) are the Cython ones
the server's fast path uses. Unless a subclass or a patch replaces how files are looked up
(``lookup_path``, ``file_response``, ``is_not_modified``), requests are answered from an
open-file cache without a thread hop; by default it looks the path up again on every request,
so every filesystem change is seen at once. When the fastserve server runs this app with
``answers="static"``, it answers the requests itself and the app is not even called; with the
default ``answers="starlette"`` it calls the app, as uvicorn would.
"""
from __future__ import annotations

import errno
import functools
import importlib.util
import os
import stat
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import anyio
import anyio.lowlevel

from fastserve._speedups.conditional import evaluate_preconditions
from fastserve._speedups.filecache import (
    KIND_FILE,
    KIND_FORBIDDEN,
    KIND_LISTING,
    KIND_MISSING,
    KIND_REDIRECT,
    CacheEntry,
    FileCache,
)
from fastserve._speedups.headers import CODINGS, IDENTITY, negotiate_coding, parse_http_date
from fastserve._speedups.pathlookup import (
    has_dot_segment, is_hidden, is_within, names_directory, raw_path_prefix, resolve_path, split_url_path,
)
from fastserve._speedups.requesthead import STATIC_FIELDS, RequestHead
from fastserve._speedups.staticanswer import StaticAnswer, decide, slash_location
from fastserve.compression import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILE, EncodedCache, report_missing
from fastserve.config import switch
from fastserve.datastructures import URL, Headers
from fastserve.exceptions import HTTPException
from fastserve.listing import MAX_ENTRIES, DirectoryListing, listed_directories, url_base
from fastserve.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    send_slices,
    starlette_range_answer,
)
from fastserve.types import Receive, Scope, Send

PathLike = Union[str, "os.PathLike[str]"]


class NotModifiedResponse(Response):
    """A 304 that keeps only the headers RFC 9110 section 15.4.5 lists for it, as Starlette's
    does: no ``Last-Modified`` beside the ``ETag`` (the server's static path, nginx-like, keeps
    it: ``filecache.NOT_MODIFIED_FIELDS``)."""

    NOT_MODIFIED_HEADERS = ("cache-control", "content-location", "date", "etag", "expires", "vary")

    def __init__(self, headers: Headers):
        super().__init__(
            status_code=304,
            headers={name: value for name, value in headers.items() if name in self.NOT_MODIFIED_HEADERS},
        )


class _StaticAnswerResponse(Response):
    """A ``staticanswer.decide`` answer as ASGI messages: the same status, fields and bytes
    the server's fast path writes. File slices are read in a worker thread."""

    chunk_size = 256 * 1024

    def __init__(
        self, answer: StaticAnswer, entry: Any = None, request: Optional[RequestHead] = None, max_ranges: int = 16
    ):
        self.answer = answer
        self._decide_again = (entry, request, max_ranges)  # when the answer waits for an encoding
        self.status_code = answer.status
        self.background = None
        self.body = answer.body or b""
        self.raw_headers = list(answer.fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answer
        while answer.waiting is not None:  # the client accepts only an encoding being made
            await answer.waiting
            entry, request, max_ranges = self._decide_again
            assert request is not None
            answer = self.answer = decide(entry, request, max_ranges)
            self.status_code = answer.status
            self.body = answer.body or b""
            self.raw_headers = list(answer.fields)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if answer.segments is None:
            await send({"type": "http.response.body", "body": answer.body})
            return
        assert answer.file is not None  # the OpenFile the answer holds keeps it open
        await send_slices(send, answer.segments, answer.file.fileno(), self.chunk_size, answer.entry.path,
                          answer.file.content_unchanged)


def _route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and (len(path) == len(root_path) or path[len(root_path)] == "/"):
        return path[len(root_path):]
    return path


# A URL path every lookup refuses (it climbs above the root): the key an absolute path is looked
# up by, so it is answered as any refused path is (404, or html mode's 404 page).
_REFUSED_KEY = "/.."


def _cache_key(path: str, scope: Scope) -> str:
    """The URL path the open-file cache knows ``path`` (``get_path``'s answer) by; an absolute
    path, never served (as in ``lookup_path``), is known by a path the cache refuses. A trailing
    slash on the request's path is kept: it decides between a directory's redirect and its index."""
    if path.startswith("/") or path.startswith(os.sep):
        return _REFUSED_KEY
    key = "/" + path.replace(os.sep, "/")
    if not key.endswith("/") and names_directory(scope.get("path", "")):
        key += "/"
    return key


def _request_head(scope: Scope, names: Tuple[bytes, ...] = STATIC_FIELDS) -> RequestHead:
    """The request's method and its ``names`` fields (``STATIC_FIELDS`` by default), read as
    the server's request readers read them (a later line of a name replaces an earlier one)."""
    request = RequestHead(scope["method"].encode("latin-1"))
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name in names:
            request.set(name, value)
    return request


# A listing is offered in gzip only (made per request, so the cheap coding); whether a request
# gets it is the same negotiation as for files (RFC 9110 section 12.5.3).
LISTING_CODINGS = 1 << CODINGS.index("gzip")


class StaticFiles:
    """Serve files from ``directory`` and/or the ``statics`` folders of ``packages``."""

    def __init__(
        self,
        *,
        directory: Optional[PathLike] = None,
        packages: Optional[List[Union[str, Tuple[str, str]]]] = None,
        html: bool = False,
        check_dir: bool = True,
        follow_symlink: bool = False,
        precompressed: bool = False,
        cache_valid: float = 0.0,
        dotfiles: bool = True,
        cache_policy: Optional[Callable[[str, bytes], Optional[bytes]]] = None,
        etag: bool = True,
        if_modified_since: str = "before",
        spa: bool = False,
        error_pages: Optional[Dict[int, str]] = None,
        compress: bool = False,
        listing: bool = False,
        templates: Optional[PathLike] = None,
        listing_max_entries: int = MAX_ENTRIES,
        file_slash: bool = True,
        answers: str = "starlette",
        max_ranges: int = 16,
    ) -> None:
        """Starlette's keywords, and fastserve's own.

        The keywords that turn something on or off take ``True`` or ``False`` (``1``/``0``);
        ``dotfiles`` also ``"allow"``/``"deny"``, ``etag`` and ``compress`` also ``"on"``/``"off"``,
        as the server's flags spell them. Any other value raises ``TypeError`` (``ValueError``
        for another word), at once, and again at the next request after such an attribute is
        set: a string like ``"deny"`` or ``"false"`` is true and would turn the setting on.
        ``cache_valid``, ``listing_max_entries`` and ``max_ranges`` take numbers (``TypeError``
        for a string, ``ValueError`` below 0, 1 and 0), ``cache_policy`` a callable or None
        (``TypeError``), ``error_pages`` the statuses 404 and 403 (``ValueError`` for another).

        ``precompressed``: send ``file.br``/``file.zst``/``file.gz`` beside ``file`` to
        clients whose ``Accept-Encoding`` allows it, with ``Content-Encoding``,
        ``Vary: Accept-Encoding`` and an ETag of their own (off by default, as in Starlette).
        ``cache_valid``: seconds a looked-up answer is trusted before the path is looked up
        again; 0 (the default) looks it up on every request, as Starlette does, so a file
        written or deleted now is answered accordingly on the next request.
        ``dotfiles``: whether paths with a segment starting with ``.`` (``/.env``,
        ``/.git/config``) are served; ``False`` answers them 404, except below
        ``/.well-known/`` (RFC 8615). ``True`` by default, as Starlette serves them; the
        fastserve server's ``--dotfiles`` defaults to ``deny``.
        ``cache_policy``: a ``fastserve.cachepolicy.CachePolicy`` (or any callable of the URL
        path and the content type returning a ``Cache-Control`` value or None) whose answer is
        sent with each file; None (the default) sends no ``Cache-Control``, as Starlette does.
        ``etag=False`` sends files without an ``ETag`` (If-None-Match then matches only ``*``).
        ``if_modified_since``: ``"before"`` (the default, as Starlette) answers 304 when the file
        was last modified at or before the date, ``"exact"`` only at that date (nginx's default);
        a date later than now never gives 304. ``ValueError`` for another value.
        ``spa``: a GET/HEAD of a missing path whose last segment has no extension is answered
        with the root's ``index.html`` (200). ``error_pages``: ``{404: "errors/404.html",
        403: ...}``, pages below the directory the server answers those statuses with (with the
        default ``answers="starlette"`` the library raises ``HTTPException(401)`` for a refused
        file, as Starlette does).
        ``compress``: compress text, JavaScript, JSON, XML, SVG, wasm and uncompressed fonts
        of more than 1 KiB on the fly, in br, zstd or gzip as ``Accept-Encoding`` prefers, once
        per file version (``fastserve.compression``; off by default, as in Starlette; the
        server's ``--compress`` is on by default).
        ``listing``: a directory without ``index.html`` (any directory, unless ``html``) is
        answered with a listing of what it holds (``fastserve.listing``: HTML, or JSON for
        ``Accept: application/json``) instead of 404; asked for without its trailing slash, it
        is redirected to the slash form. ``templates``: a directory whose ``listing.html``
        replaces the packaged template. ``listing_max_entries``: entries read per directory
        (in the file system's order, then sorted); a listing of more says it is truncated.
        ``file_slash``: a file asked for with a trailing slash (``/a.txt/``) is served, as
        Starlette does; ``False`` answers it 404, as nginx and the fastserve server do (with
        fastserve's own lookup).
        ``answers``: ``"starlette"`` (the default) answers as Starlette's ``StaticFiles`` does:
        a ``Range`` is read by its rules (``responses.starlette_range``: a malformed header is
        ``400`` with Starlette's text, ranges are sorted and merged, up to
        ``FileResponse.max_ranges`` of them, a ``416`` carries no validators) and a ``304``
        carries ``NotModifiedResponse.NOT_MODIFIED_HEADERS`` only (no ``Last-Modified``);
        a ``404.html`` page (html mode) is sent as a ``FileResponse``, with its validators;
        ``"static"`` as the fastserve server's static path does (RFC 9110 section 14.2: a
        ``Range`` that cannot be used is ignored, at most ``max_ranges`` ranges; ``416`` and
        ``304`` name the file's ``ETag`` and ``Last-Modified``; an error page has none, since it
        stands in for what is not there; a directory asked for without its slash is ``301`` to
        the path with the slash, where Starlette answers ``307`` to the absolute URL; a file the
        filesystem refuses is ``403``, or the ``error_pages`` 403 page, where Starlette raises
        ``401``), and ``python -m fastserve module:app`` answers this
        app's requests from its fast path. ``ValueError`` for another value.
        ``max_ranges``: with ``answers="static"``, the most ranges one ``Range`` header may
        list (RFC 9110 section 14.2); a header listing more gets the whole file (200). The
        fastserve server sets it to its ``--max-ranges`` when it runs this app.
        """
        self.directory = directory
        self.packages = packages
        self.all_directories = self.get_directories(directory, packages)
        self.html = html
        self.config_checked = False
        self.follow_symlink = follow_symlink
        self.precompressed = precompressed
        self.cache_valid = _number("cache_valid", cache_valid, 0)
        self.dotfiles = dotfiles
        if cache_policy is not None and not callable(cache_policy):
            raise TypeError(f"cache_policy must be a CachePolicy, a callable or None, not {cache_policy!r}")
        self.cache_policy = cache_policy
        self.etag = etag
        if if_modified_since not in ("before", "exact"):
            raise ValueError(f"if_modified_since must be 'before' or 'exact', not {if_modified_since!r}")
        self.if_modified_since = if_modified_since
        self.spa = spa
        self.error_pages = _error_pages(error_pages)
        self.compress = compress
        self.listing = listing
        self.templates = templates
        self.listing_max_entries = int(_number("listing_max_entries", listing_max_entries, 1, whole=True))
        self.file_slash = file_slash
        if answers not in ("starlette", "static"):
            raise ValueError(f"answers must be 'starlette' or 'static', not {answers!r}")
        self.answers = answers
        self.max_ranges = int(_number("max_ranges", max_ranges, 0, whole=True))
        self._check_switches()
        self._listing_renderer: Optional[DirectoryListing] = None
        self._listing_limit: Optional[Tuple[Any, anyio.CapacityLimiter]] = None
        if switch("check_dir", _falsy_none(check_dir)) and directory is not None and not os.path.isdir(directory):
            raise RuntimeError(f"Directory '{directory}' does not exist")
        self.file_cache: Optional[FileCache] = None
        self._file_cache_settings: Optional[Tuple[Any, ...]] = None

    def uses_own_lookup(self) -> bool:
        """Whether requests are answered from fastserve's open-file cache: true unless
        ``lookup_path``, ``file_response`` or ``is_not_modified`` has been replaced, by a
        subclass or by patching the class or this instance. Asked on every request."""
        overrides = self.__dict__
        cls = type(self)
        for name, original in _LOOKUP_METHODS:
            if name in overrides or getattr(cls, name) is not original:
                return False
        return True

    def current_file_cache(self) -> FileCache:
        """The open-file cache for the current settings (``all_directories``, ``html``,
        ``follow_symlink``, ``precompressed``, ``cache_valid``, ``dotfiles``, ``cache_policy``,
        ``etag``, ``if_modified_since``, ``spa``, ``error_pages``, ``compress``, ``listing``,
        ``file_slash``), made anew when one changed."""
        if self.file_cache is None or self._settings() != self._file_cache_settings:
            self._check_switches()  # an attribute set since: held to what __init__ takes
            self.use_file_cache(self.build_file_cache(self.cache_valid))
        assert self.file_cache is not None
        return self.file_cache

    def _check_switches(self) -> None:
        """Each on/off attribute as a bool, by the rule ``__init__`` takes it by (``_SWITCHES``)."""
        for name, words, none_is_false in _SWITCHES:
            value = getattr(self, name)
            setattr(self, name, switch(name, _falsy_none(value) if none_is_false else value, words))

    def use_file_cache(self, cache: FileCache) -> None:
        """Answer from ``cache`` (``build_file_cache``'s, for the current settings) until a
        setting changes: the server hands its own cache (``--cache-*`` limits) to the app that
        renders its directory listings, so both look paths up alike."""
        self.file_cache = cache
        self._file_cache_settings = self._settings()

    def _settings(self) -> Tuple[Any, ...]:
        return (
            tuple(self.all_directories), self.html, self.follow_symlink, self.precompressed, self.cache_valid,
            self.dotfiles, self.cache_policy, self.etag, self.if_modified_since, self.spa,
            tuple(sorted(self.error_pages.items())), self.compress, self.listing, self.file_slash,
        )

    def build_file_cache(
        self, valid_for: float, *, compress_bytes: int = DEFAULT_MAX_BYTES,
        compress_max_file: int = DEFAULT_MAX_FILE, **limits: int,
    ) -> FileCache:
        """A new open-file cache for this app's settings, trusting a ``stat`` for ``valid_for``
        seconds; ``limits`` are ``FileCache``'s ``max_entries``, ``max_bytes`` and ``max_body``
        (the server passes its ``--cache-*`` flags); with ``compress``, its ``EncodedCache``
        holds ``compress_bytes`` of encodings of files up to ``compress_max_file`` bytes."""
        encoder = None
        if self.compress:
            encoder = EncodedCache(max_bytes=compress_bytes, max_file=compress_max_file)
            report_missing(encoder.missing)
        return FileCache(
            self.all_directories,
            html=self.html,
            follow_symlink=self.follow_symlink,
            precompressed=self.precompressed,
            valid_for=valid_for,
            dotfiles=self.dotfiles,
            cache_policy=self.cache_policy,
            etag=self.etag,
            modified_since_exact=self.if_modified_since == "exact",
            spa=self.spa,
            error_pages=self.error_pages,
            encoder=encoder,
            listing=self.listing,
            file_slash=self.file_slash,
            **limits,
        )

    def get_directories(
        self,
        directory: Optional[PathLike] = None,
        packages: Optional[List[Union[str, Tuple[str, str]]]] = None,
    ) -> List[PathLike]:
        """The directories to look in: ``directory`` first, then each package's folder."""
        directories: List[PathLike] = []
        if directory is not None:
            directories.append(directory)
        for package in packages or []:
            if isinstance(package, tuple):
                package, statics_dir = package
            else:
                statics_dir = "statics"
            spec = importlib.util.find_spec(package)
            assert spec is not None, f"Package {package!r} could not be found."
            assert spec.origin is not None, f"Package {package!r} could not be found."
            package_directory = os.path.normpath(os.path.join(spec.origin, "..", statics_dir))
            assert os.path.isdir(
                package_directory
            ), f"Directory '{statics_dir!r}' in package {package!r} could not be found."
            directories.append(package_directory)
        return directories

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        assert scope["type"] == "http"
        if not self.config_checked:
            await self.check_config()
            self.config_checked = True
        path = self.get_path(scope)
        response = await self.get_response(path, scope)
        await response(scope, receive, send)

    def get_path(self, scope: Scope) -> str:
        """The path to serve, relative, with OS separators and ``.``/``..`` removed (``"."`` for
        the directory itself).

        Decided by ``pathlookup.split_url_path``, the rule the server's fast path looks paths up
        by, so both faces serve the same file for every request path: a path holding a NUL or a
        backslash anywhere, or climbing above the root, is refused before its dot segments are
        removed (``/%00/..`` and ``/a%5cb/../x`` are 404, not ``/`` and ``/x``). A refused path
        comes back as the request spelled it, less its leading slashes, which every lookup
        (``lookup_path`` and the open-file cache) refuses again: html mode's ``404.html``
        answers it.
        """
        route_path = _route_path(scope)
        parts = split_url_path(route_path)
        if parts is None:
            return route_path.lstrip("/")
        return os.sep.join(parts) if parts else "."

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The response for ``path`` (``get_path``'s answer) given the request's method and
        headers: a file, a 304/412, html mode's redirect or ``404.html``.

        Only ``scope["method"]`` is required (``headers`` when there are any); ``path`` and
        the rest of a request's scope are needed only for html mode's redirect of a
        directory to its slash form. Raises ``HTTPException`` 405 (with ``Allow``), 404,
        or 401 when the filesystem refuses, as Starlette's ``StaticFiles`` does (403 with
        ``answers="static"``, as the server answers).
        """
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        if self.uses_own_lookup():
            key = _cache_key(path, scope)
            cache = self.current_file_cache()
            entry = cache.lookup(key)
            if entry.kind == KIND_LISTING:
                parts = split_url_path(key) or ()
                directories = listed_directories(cache.roots, parts, self.follow_symlink)
                return await self.listing_response(directories, parts, scope)
            return self._cached_response(entry, scope)
        try:
            full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, path)
        except PermissionError:
            raise HTTPException(status_code=401)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise HTTPException(status_code=404)
            raise
        except ValueError:
            raise HTTPException(status_code=404)
        if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
            return self.file_response(full_path, stat_result, scope)
        directory = full_path if stat_result is not None and stat.S_ISDIR(stat_result.st_mode) else None
        if directory is not None and self.html:
            index_path = os.path.join(path, "index.html")
            full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, index_path)
            if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                if not names_directory(scope["path"]):
                    return self._slash_redirect(scope)
                return self.file_response(full_path, stat_result, scope)
        if directory is not None and self.listing:
            if not names_directory(scope["path"]):
                return self._slash_redirect(scope)
            parts = split_url_path(path.replace(os.sep, "/")) or ()
            real = os.path.realpath(directory)
            root = next((r for r in map(os.path.realpath, self.all_directories) if is_within(real, r)), real)
            return await self.listing_response([(directory, root)], parts, scope)
        if self.html:
            full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, "404.html")
            if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                return FileResponse(full_path, stat_result=stat_result, status_code=404)
        raise HTTPException(status_code=404)

    def _cached_response(self, entry: CacheEntry, scope: Scope) -> Response:
        if entry.kind == KIND_REDIRECT:
            return self._slash_redirect(scope)
        if entry.kind == KIND_FORBIDDEN and (self.answers != "static" or entry.path is None):
            # Starlette's 401; the server's 403 (as nginx) with answers="static", or its error page below
            raise HTTPException(status_code=401 if self.answers != "static" else entry.status)
        if entry.kind == KIND_MISSING and entry.path is None:  # no 404.html to send
            if entry.status == 503:  # out of descriptors: the file may well be there
                raise HTTPException(status_code=503, headers={"Retry-After": "1"})
            raise HTTPException(status_code=entry.status)  # 404, or 500 when the cache policy failed
        request = _request_head(scope)
        if self.answers == "static":
            return _StaticAnswerResponse(decide(entry, request, self.max_ranges), entry, request, self.max_ranges)
        if entry.kind == KIND_MISSING and entry.path is not None:  # the 404 page (no page: raised above)
            return FileResponse(entry.path, status_code=entry.status, stat_result=entry.stat)
        refusal = None
        if entry.kind == KIND_FILE and request.range_value is not None:
            validators = [None if value is None else value.decode("latin-1") for value in (entry.etag, entry.last_modified)]
            refusal = starlette_range_answer(request, entry.size, *validators)
        answer = decide(entry, request, FileResponse.max_ranges)
        if answer.status == 304:
            return NotModifiedResponse(Headers(raw=list(answer.fields)))
        if refusal is not None and answer.status != 412:  # preconditions come first
            return refusal
        return _StaticAnswerResponse(answer, entry, request, FileResponse.max_ranges)

    async def listing_response(self, directories: List[Tuple[str, str]], parts: Tuple[str, ...], scope: Scope) -> Response:
        """The listing of the URL directory ``parts`` (held in ``directories``, ``(directory,
        root)`` pairs, first root first) for this request: HTML or JSON by its ``Accept``, sorted
        by its query (``?sort=name|size|mtime&order=asc|desc``), read and rendered in a worker
        thread. ``Cache-Control: no-cache``, ``Vary: Accept``, a strong ETag of the body (so
        ``If-None-Match`` gives 304 and ``If-Match`` 412, RFC 9110 section 13.1). With ``compress``,
        gzip for clients that accept it (``Vary: Accept, Accept-Encoding``), made in that thread."""
        renderer = self._listing_renderer
        if renderer is None or (renderer.templates_dir, renderer.max_entries) != (
            self.templates, self.listing_max_entries
        ):
            renderer = self._listing_renderer = DirectoryListing(self.templates, self.listing_max_entries)
        request = Headers(raw=scope.get("headers", []))
        answer = functools.partial(
            renderer.answer, directories, parts,
            root_path=scope.get("root_path", ""), query_string=scope.get("query_string", b""),
            accept=request.get("accept"), dotfiles=self.dotfiles, follow_symlink=self.follow_symlink,
            gzip_wanted=self.compress and negotiate_coding(
                _latin1(request.get("accept-encoding")), LISTING_CODINGS) != IDENTITY,
            valid_for=self.current_file_cache().valid_for,
        )
        rendered = await anyio.to_thread.run_sync(answer, limiter=self._listing_limiter())
        headers = {"etag": rendered.etag, "cache-control": "no-cache", "vary": "Accept"}
        if self.compress:
            headers["vary"] = "Accept, Accept-Encoding"
        if rendered.coding is not None:
            headers["content-encoding"] = rendered.coding
        precondition = evaluate_preconditions(
            scope["method"].encode("latin-1"),
            _latin1(request.get("if-match")), None, _latin1(request.get("if-none-match")), None,
            rendered.etag.encode("latin-1"), 0,
        )
        if precondition == 412:
            return PlainTextResponse("Precondition Failed", status_code=412)
        if precondition == 304:
            return Response(status_code=304, headers=headers)
        return Response(rendered.body, headers=headers, media_type=rendered.content_type)

    def _listing_limiter(self) -> anyio.CapacityLimiter:
        """One listing renders at a time per app and event loop: rendering holds the GIL most
        of the time, and each more thread doing it takes that much more from the event loop
        (16 concurrent listings of 10,000 entries held small requests on the same worker up
        to half a second; one at a time, a few milliseconds). The others wait their turn, and
        then mostly find the listing already rendered (``DirectoryListing.answer``)."""
        token = anyio.lowlevel.current_token()
        if self._listing_limit is None or self._listing_limit[0] != token:
            self._listing_limit = (token, anyio.CapacityLimiter(1))
        return self._listing_limit[1]

    def _slash_redirect(self, scope: Scope) -> Response:
        """The redirect of a directory asked for without its slash: 307 to the absolute URL as
        Starlette's; with ``answers="static"``, 301 to the path ``staticanswer.slash_location``
        gives the server's fast path (nginx's status; a path, prefix and query kept as sent)."""
        route_path = _route_path(scope)
        if self.answers == "static":
            path = scope["path"]
            raw_path = scope.get("raw_path")
            if raw_path is None:  # a server that gives none: the path, percent-encoded
                raw_path = raw_path_prefix(path)
            query = scope.get("query_string", b"")
            location = slash_location(raw_path, path, b"?" + query if query else b"")
            if location is None:
                raise HTTPException(status_code=400)
            return Response(status_code=301, headers={"location": location.decode("latin-1")})
        url = URL(scope=scope)
        if has_dot_segment(route_path):
            # To the directory the dot segments lead to (RFC 3986 section 5.2.4), as the server
            # redirects; Starlette's would go through them (/sub/../dir/).
            mount = scope["path"][:len(scope["path"]) - len(route_path)]
            target = url.replace(path=url_base(mount, split_url_path(route_path) or ()))
            return RedirectResponse(url=target, status_code=307)
        return RedirectResponse(url=url.replace(path=url.path + "/"), status_code=307)

    def lookup_path(self, path: str) -> Tuple[str, Optional[os.stat_result]]:
        """``(full_path, stat_result)`` of ``path`` in the first directory holding it, or ``("", None)``
        (also for a hidden path when ``dotfiles`` is false)."""
        self._check_switches()
        parts = split_url_path(path.replace(os.sep, "/"))
        if parts is None or path.startswith(("/", "\\")) or (not self.dotfiles and is_hidden(parts)):
            return "", None
        if not self.follow_symlink:
            roots = tuple(os.path.realpath(d) for d in self.all_directories)
        else:
            roots = tuple(os.path.abspath(d) for d in self.all_directories)
        found = resolve_path(roots, parts, self.follow_symlink)
        if found is None:
            return "", None
        return found

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """A ``FileResponse``, or the 412 (``staticanswer.decide``'s, from If-Match and
        If-Unmodified-Since) or 304 (``is_not_modified``) its validators call for."""
        response = FileResponse(full_path, status_code=status_code, stat_result=stat_result)
        preconditions = _request_head(scope, _PRECONDITION_FIELDS)
        answer = response._answer(stat_result, preconditions)
        if answer.status == 412:
            return _StaticAnswerResponse(answer)
        if self.is_not_modified(response.headers, Headers(raw=scope.get("headers", []))):
            return NotModifiedResponse(response.headers)
        return response

    async def check_config(self) -> None:
        """Fail loudly, once, when ``directory`` is missing or not a directory."""
        if self.directory is None:
            return
        try:
            stat_result = await anyio.to_thread.run_sync(os.stat, self.directory)
        except FileNotFoundError:
            raise RuntimeError(f"StaticFiles directory '{self.directory}' does not exist.")
        if not (stat.S_ISDIR(stat_result.st_mode) or stat.S_ISLNK(stat_result.st_mode)):
            raise RuntimeError(f"StaticFiles path '{self.directory}' is not a directory.")

    def is_not_modified(self, response_headers: Headers, request_headers: Headers) -> bool:
        """Whether If-None-Match / If-Modified-Since allow a 304 for this response."""
        if_none_match = request_headers.get("if-none-match")
        if_modified_since = request_headers.get("if-modified-since")
        last_modified = parse_http_date(response_headers.get("last-modified", "").encode("latin-1"))
        return (
            evaluate_preconditions(
                b"GET",
                None,
                None,
                if_none_match.encode("latin-1") if if_none_match is not None else None,
                if_modified_since.encode("latin-1") if if_modified_since is not None else None,
                response_headers["etag"].encode("latin-1"),
                last_modified,
            )
            == 304
        )


# The command line's words for the switches it spells as values (--etag on|off, --compress on|off).
ON_OFF = {"on": True, "off": False}
ALLOW_DENY = {"allow": True, "deny": False}  # --dotfiles allow|deny
# StaticFiles' on/off attributes: (name, the command line's words for it, whether None is false:
# Starlette's own switches, as Starlette reads them).
_SWITCHES: Tuple[Tuple[str, Optional[Dict[str, bool]], bool], ...] = (
    ("html", None, True), ("follow_symlink", None, True), ("precompressed", None, False),
    ("dotfiles", ALLOW_DENY, False), ("etag", ON_OFF, False), ("spa", None, False),
    ("compress", ON_OFF, False), ("listing", None, False), ("file_slash", None, False),
)


def _falsy_none(value: Any) -> Any:
    """``False`` for ``None`` given to a switch Starlette has too (``html``, ``check_dir``,
    ``follow_symlink``), which Starlette reads as false: an app passing ``html=None`` runs as
    under Starlette. fastserve's own switches refuse ``None`` (``config.switch``)."""
    return False if value is None else value


def _number(name: str, value: Any, least: float, whole: bool = False) -> float:
    """``value`` for a numeric keyword, at least ``least``: ``TypeError`` for a string, a bool or
    (``whole``) a fraction, ``ValueError`` below ``least`` or NaN."""
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise TypeError(f"{name} must be {'a whole number' if whole else 'a number'}, not {value!r}")
    if not value >= least:
        raise ValueError(f"{name} must be at least {least:g}, not {value!r}")
    return value


def _error_pages(pages: Optional[Dict[Any, str]]) -> Dict[int, str]:
    """``error_pages`` keyed by status: 404 and 403 only (``"404"`` as ``--error-page 404=PATH``
    spells it), each a URL path; ``ValueError`` for another status, which would never be used."""
    checked: Dict[int, str] = {}
    for status, page in dict(pages or {}).items():
        code = int(status) if isinstance(status, str) and status.strip().isdigit() else status
        if isinstance(code, bool) or code not in (403, 404):
            raise ValueError(f"error_pages answers 404 and 403 only, not {status!r}")
        if not isinstance(page, (str, os.PathLike)):
            raise TypeError(f"error_pages[{status!r}] must be a URL path below the directory, not {page!r}")
        checked[code] = os.fspath(page)
    return checked


# What file_response asks decide about; If-None-Match and If-Modified-Since go to is_not_modified.
_PRECONDITION_FIELDS = (b"if-match", b"if-unmodified-since")


def _latin1(value: Optional[str]) -> Optional[bytes]:
    return None if value is None else value.encode("latin-1")


# The methods that decide how a path becomes a file; replacing any of them turns the cache off.
_LOOKUP_METHODS = tuple((name, getattr(StaticFiles, name)) for name in ("lookup_path", "file_response", "is_not_modified"))
