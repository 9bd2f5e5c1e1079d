"""The open-file cache: what the filesystem told us about a URL path, ready to answer.

Keyed by the decoded URL path, an entry holds the outcome of the lookup (file, 404,
redirect, 403), the file's validators, its content type, the pre-built header lines and,
for small files, the body itself; large files keep one shared open descriptor for
``sendfile``. Misses are cached too. An entry older than ``valid_for`` seconds (0: every
time) is revalidated by looking its path up again (a ``stat`` per root tried, no read); a change
of content or of who may read it (mode, owner, inode change time) rebuilds it. An entry that
sends from a descriptor checks it (``fstat``) on every lookup, so a file rewritten in place is
never sent under its old validators. The cache is bounded in entries and in body bytes,
evicting the oldest insertions first.
"""
import errno
import logging
import os
import stat as stat_module

from libc.time cimport time
from posix.stat cimport S_IFMT, S_IFREG, fstat, stat, struct_stat
from posix.time cimport timespec

from fastserve._speedups.clock cimport monotonic

from fastserve._speedups.headers import CODINGS, content_type_for, format_http_date, make_etag
from fastserve._speedups.headers cimport CODING_IDENTITY, is_field_value, negotiate_coding
from fastserve._speedups.pathlookup cimport is_hidden, is_within, names_directory, resolve_path, split_url_path
from fastserve._speedups.wire cimport render_fields

# The entry kinds, for Python callers (``CacheEntry.kind``).
KIND_FILE = ENTRY_FILE
KIND_MISSING = ENTRY_MISSING
KIND_REDIRECT = ENTRY_REDIRECT
KIND_FORBIDDEN = ENTRY_FORBIDDEN
KIND_LISTING = ENTRY_LISTING

cdef object S_ISREG = stat_module.S_ISREG
cdef object S_ISDIR = stat_module.S_ISDIR
cdef bytes NOT_FOUND_BODY = b"Not Found"
# The fields a 304 repeats from the 200 it stands for (RFC 9110 section 15.4.5: ETag, Vary and
# the caching fields; Last-Modified too, as nginx sends it). A 416 repeats them as well, so the
# client can tell which version its range missed.
NOT_MODIFIED_FIELDS = frozenset(
    (b"cache-control", b"content-location", b"date", b"etag", b"expires", b"last-modified", b"vary")
)
# Precompressed siblings looked for beside each file, in the order they are preferred.
# The index of each is its coding's in headers.CODINGS.
cdef tuple SIBLINGS = ((".br", "br"), (".zst", "zstd"), (".gz", "gzip"))
# A file the server may not read: 403, as nginx answers (StaticFiles keeps Starlette's 401).
cdef bytes FORBIDDEN_BODY = b"Forbidden"
# Out of descriptors (the process's or the system's) when opening a file: that says nothing of
# the file, so the answer is 503 and it is looked up again for the next request.
cdef tuple OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
cdef bytes UNAVAILABLE_BODY = b"Service Unavailable"
cdef bytes INTERNAL_ERROR_BODY = b"Internal Server Error"
logger = logging.getLogger("fastserve")


class _PolicyFailed(Exception):
    """The cache policy raised, or answered what is no field value: the file gets a 500."""
# What an error page (404.html, --error-page) is sent with, and the largest one used (held in
# memory whatever --cache-max-file says).
cdef tuple ERROR_PAGE_FIELDS = (b"content-type", b"content-length")
cdef Py_ssize_t ERROR_PAGE_MAX_BODY = 256 * 1024


cdef inline long long _nanoseconds(timespec t):
    return <long long>t.tv_sec * 1000000000LL + t.tv_nsec


cdef inline tuple _identity(st):
    """What a stat says about a file's content and its readability, for revalidation."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid)


cdef class OpenFile:
    """A read-only descriptor shared by every response that streams the same file.

    It is closed when the last response holding it (and the cache) let it go, so
    replacing a file never cuts a transfer that is still running.
    """

    def __cinit__(self, str path):
        self.fd = -1  # so a failed open never closes descriptor 0
        self.path = path
        # O_NONBLOCK: a FIFO where a file was stat'ed a moment ago must not hold the worker in
        # open() until a writer comes (for a regular file the flag changes nothing).
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        cdef struct_stat st
        if fstat(self.fd, &st) == 0:
            self.size = st.st_size
            self.mtime_ns = _nanoseconds(st.st_mtim)
            self.ctime_ns = _nanoseconds(st.st_ctim)
            self.regular = (st.st_mode & S_IFMT) == S_IFREG
        else:
            self.size = -1  # never matches: unchanged() is False
            self.regular = False

    cpdef bint unchanged(self):
        """Whether the file behind the descriptor has the size and the modification and change
        times it had when it was opened (``descriptor_unchanged``): its content, and who may
        read it (``chmod``, ``chown``), as the open-file cache asks on each lookup. A file
        replaced by a rename answers False too (its link count, so its change time, moved)."""
        return descriptor_unchanged(self.fd, self.size, self.mtime_ns, self.ctime_ns)

    cpdef bint content_unchanged(self):
        """Whether the file behind the descriptor still holds the bytes it held when it was
        opened, as far as its size and modification time tell (``descriptor_unchanged``
        without the change time): what a sender asks between the pieces of a file it sends. A
        rename over the file, ``chmod`` or ``chown`` leave the bytes sent as they were."""
        return descriptor_unchanged(self.fd, self.size, self.mtime_ns)

    def __dealloc__(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fileno(self) -> int:
        return self.fd


cpdef bint descriptor_unchanged(int fd, long long size, long long mtime_ns, long long ctime_ns=-1):
    """Whether the file open as ``fd`` still has this size (bytes) and modification time, and
    this change time unless ``ctime_ns`` is -1 (nanoseconds since the epoch, as
    ``os.stat_result.st_mtime_ns`` and ``st_ctime_ns``): one ``fstat``, no Python object;
    False when it cannot be ``fstat``'ed.

    The one test of "this is still the version whose bytes we promised" (RFC 9110 section
    8.8.3: one entity-tag, one sequence of bytes), made by the open-file cache on each lookup
    (``OpenFile.unchanged``) and by every sender between the pieces of a file it sends
    (``OpenFile.content_unchanged``; ``responses.send_slices``). A write in place (``cp`` over
    the file keeps its inode), an append, ``truncate`` or ``touch`` move the size or the
    modification time; ``chmod``, ``chown`` and a rename over the file (the descriptor stays
    on the old one, whose bytes stay as they were) move the change time alone. The kernel keeps
    these times at its clock tick (a few milliseconds), so a second write within the tick of
    the first is not told apart from it."""
    cdef struct_stat st
    if fstat(fd, &st) != 0:
        return False
    return st.st_size == size and _nanoseconds(st.st_mtim) == mtime_ns and (
        ctime_ns == -1 or _nanoseconds(st.st_ctim) == ctime_ns)


cpdef OpenFile open_to_send(str path):
    """``path`` opened to be sent, as an ``OpenFile`` (read-only, without waiting on a FIFO);
    ``FileNotFoundError`` (ENOENT) when what it names is no regular file: a FIFO, a device, a
    directory (a socket, and what cannot be opened, raise ``os.open``'s ``OSError``). The one
    way a file is opened to be answered with: the open-file cache's entries and the files apps
    name with ``http.response.pathsend``."""
    cdef OpenFile handle = OpenFile(path)
    if not handle.regular:  # a FIFO, device or directory in a file's place: not here
        raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
    return handle


cdef class CacheEntry:
    """One answer for one URL path. Read-only from Python; built by ``FileCache``."""

    def __repr__(self):
        return f"<CacheEntry {self.status} {self.path!r}>"


cdef CacheEntry _plain_entry(int kind, int status, bytes body, bytes content_type):
    cdef CacheEntry entry = CacheEntry()
    entry.kind = kind
    entry.status = status
    entry.path = None
    entry.body = body
    entry.size = len(body)
    entry.content_type = content_type
    _set_fields(entry, [(b"content-type", content_type), (b"content-length", b"%d" % entry.size)])
    entry.held = len(body)
    return entry


cdef void _set_fields(CacheEntry entry, list fields):
    entry.fields = fields
    entry.not_modified_fields = [pair for pair in fields if pair[0] in NOT_MODIFIED_FIELDS]
    entry.wire_fields = render_fields(fields)
    entry.wire_not_modified = render_fields(entry.not_modified_fields)


cdef CacheEntry _file_entry(
    str full_path, int status, Py_ssize_t max_body, bytes content_type=None, bytes coding=None, bint vary=False,
    bytes cache_control=None, bint with_etag=True,
):
    """Stat (through the open descriptor) and, when small, read the file.

    For a precompressed sibling, ``content_type`` is the original file's and ``coding``
    its Content-Encoding; ``vary`` marks every representation of a file that has siblings;
    ``cache_control`` (the cache policy's value for the file, or None) is sent as is;
    without ``with_etag`` the entry has no ETag (``etag`` None, no field).
    """
    cdef CacheEntry entry = CacheEntry()
    cdef OpenFile handle = open_to_send(full_path)
    cdef bytes body = None
    st = os.fstat(handle.fd)
    if st.st_size <= max_body:
        body, st = _read_settled(handle.fd, st)
    entry.kind = ENTRY_FILE if status == 200 else ENTRY_MISSING
    entry.status = status
    entry.path = full_path
    entry.stat = st
    entry.size = st.st_size
    # RFC 9110 section 8.8.2.1: a Last-Modified later than the answer's Date is replaced by
    # that date (a file unpacked or copied with a clock ahead of this one); the time it was
    # first served is the latest time it is known to have been modified.
    cdef double modified = min(<double>st.st_mtime, <double>time(NULL))
    entry.mtime = <long long>modified
    entry.mtime_ns = st.st_mtime_ns
    entry.ino = st.st_ino
    entry.etag = make_etag(st.st_mtime_ns, st.st_size) if with_etag else None
    if coding is not None and with_etag:  # each representation has its own validator
        entry.etag = _coded_etag(entry.etag, coding)
    entry.last_modified = format_http_date(modified)
    entry.content_type = content_type or content_type_for(full_path).encode("latin-1")
    if body is not None:
        entry.body = body
        if len(body) != entry.size:  # still being written: take what is there
            entry.size = len(body)
        entry.file = None
        entry.held = entry.size
    else:
        entry.body = None
        entry.file = handle
        entry.held = 0
    entry.coding = coding
    entry.cache_control = cache_control
    _set_file_fields(entry, vary)
    entry.variants = None
    return entry


cdef bint _sent_files_unchanged(CacheEntry entry):
    """Whether the files ``entry`` sends from their descriptors (itself, its precompressed
    siblings) are as they were when stat'ed: one rewritten in place (the same inode: ``cp`` over
    it) would otherwise be sent until the next revalidation, its new bytes under the old
    validators and length. One ``fstat`` per descriptor (``OpenFile.unchanged``); a file replaced
    by another (a rename) leaves the descriptor on the old one, whose bytes still match."""
    if entry.file is not None and not entry.file.unchanged():
        return False
    for coding, variant in entry.variants or ():
        if (<CacheEntry>variant).file is not None and not _sent_files_unchanged(<CacheEntry>variant):
            return False
    return True


cdef tuple _read_settled(int fd, object st):
    """``(content, stat)``: the file's bytes and the stat they were read under.

    A file written while it is read (a deploy copying over it in place) would otherwise be held
    as a mix of old and new bytes under the validators of the stat taken before the read; so
    it is read again, under the newer stat, while a stat taken after the read differs (at most
    three times: a file written without pause is taken as read, and its next revalidation
    sees the change)."""
    cdef bytes content = None
    cdef int attempt
    for attempt in range(3):
        content = os.pread(fd, st.st_size, 0)
        after = os.fstat(fd)
        if _identity(after) == _identity(st) or attempt == 2:
            break
        st = after
    return content, st


cdef inline bytes _coded_etag(bytes etag, bytes coding):
    return etag[:len(etag) - 1] + b"-" + coding + b'"'


cdef void _set_file_fields(CacheEntry entry, bint vary):
    """A file representation's fields, from what the entry holds; ``vary`` for a file that has
    encoded representations (every one of them, the unencoded one included, says so)."""
    # In the order Starlette's FileResponse sends them, fastserve's own fields after them.
    fields = [(b"content-type", entry.content_type)]
    if entry.coding is None:
        # An encoded representation is only ever sent whole (see staticanswer.decide).
        fields.append((b"accept-ranges", b"bytes"))
    fields.append((b"content-length", b"%d" % entry.size))
    fields.append((b"last-modified", entry.last_modified))
    if entry.etag is not None:
        fields.append((b"etag", entry.etag))
    if entry.coding is not None:
        fields.append((b"content-encoding", entry.coding))
    if entry.cache_control is not None:
        fields.append((b"cache-control", entry.cache_control))
    if vary:
        fields.append((b"vary", b"Accept-Encoding"))
    _set_fields(entry, fields)


cpdef CacheEntry encoded_entry(CacheEntry entry, int index, bytes body):
    """The representation of file ``entry`` in content coding ``CODINGS[index]`` whose bytes
    are ``body`` (made by ``compression.EncodedCache``): the file's validators, with an ETag of
    its own (the file's, suffixed with the coding, as a precompressed sibling's is), its type
    and Cache-Control, sent whole from memory."""
    cdef CacheEntry encoded = CacheEntry()
    cdef bytes coding = CODINGS[index].encode()
    encoded.kind = entry.kind
    encoded.status = entry.status
    encoded.path = entry.path
    encoded.stat = entry.stat
    encoded.size = len(body)
    encoded.mtime = entry.mtime
    encoded.mtime_ns = entry.mtime_ns
    encoded.ino = entry.ino
    encoded.etag = _coded_etag(entry.etag, coding) if entry.etag is not None else None
    encoded.last_modified = entry.last_modified
    encoded.content_type = entry.content_type
    encoded.modified_since_exact = entry.modified_since_exact
    encoded.body = body
    encoded.file = None
    encoded.held = len(body)
    encoded.coding = coding
    encoded.cache_control = entry.cache_control
    encoded.saved = entry.size - encoded.size
    _set_file_fields(encoded, True)
    return encoded


cpdef CacheEntry choose_representation(CacheEntry entry, bytes accept_encoding):
    """The representation ``headers.negotiate_coding`` picks among those ready (precompressed
    siblings, or encodings already made), else the file itself."""
    cdef int index
    if entry.representations is None:
        return entry
    index = negotiate_coding(accept_encoding, entry.offered)
    if index < 0 or index == CODING_IDENTITY:
        return entry
    chosen = entry.representations[index]
    return entry if chosen is None else <CacheEntry>chosen


cdef tuple _root_stamps(tuple encoded_roots):
    """``(device, inode)`` of the directory each root names now (its symlinks followed), or
    None when one cannot be ``stat``'ed."""
    cdef struct_stat st
    cdef list stamps = []
    for root in encoded_roots:
        if stat(<bytes>root, &st) != 0:
            return None
        stamps.append((st.st_dev, st.st_ino))
    return tuple(stamps)


cdef class FileCache:
    """Bounded cache of URL path -> ``CacheEntry`` over one or several roots.

    ``roots`` are made absolute here (real paths unless ``follow_symlink``), so the
    containment check in ``resolve_path`` compares like with like; they are resolved again
    every ``valid_for`` seconds, so a root that is a symlink follows it when it is swapped. ``dotfiles=False``
    answers every path with a hidden segment (``pathlookup.is_hidden``) as missing.
    ``cache_policy`` (a ``fastserve.cachepolicy.CachePolicy``, or any callable of the URL path
    and the content type returning the ``Cache-Control`` value or None) adds that field to
    each file's answers; None (the default) sends none, as Starlette does. A policy that raises,
    or answers what is no field value (not bytes, or holding CR, LF or NUL, which would split
    the head: ``headers.is_field_value``), has that file answered 500, with an error logged.
    ``etag=False``
    sends files without an ETag; ``modified_since_exact`` answers If-Modified-Since with 304
    only for the file's exact Last-Modified (``conditional.evaluate_preconditions``).
    ``spa``: a missing path whose last segment has no extension (``/users/42``) is answered
    with the root's ``index.html`` (200), for single-page apps that route in the browser.
    ``error_pages``: ``{status: page}`` (404 and 403; a URL path below the roots) answered
    with that status instead of the plain text; html mode's ``404.html`` is the 404 default.
    ``encoder``: a ``fastserve.compression.EncodedCache`` that compresses the files it finds
    compressible on the fly (once per file version, kept within its own byte budget); a file
    with precompressed siblings is given those instead.
    ``listing``: a directory without index (any directory, when not ``html``) is an
    ``ENTRY_LISTING`` whose ``path`` is the directory (asked for without its slash: a redirect
    to the slash form); the entry carries no answer, ``fastserve.listing`` renders it.
    ``file_slash``: a file asked for with a trailing slash (``/a.txt/``) is served, as
    Starlette does; False answers it as missing (404), as nginx does, so that one file has
    one URL (relative links, caches and a proxy's path rules see the file only as itself).
    """

    def __init__(
        self,
        roots,
        *,
        bint html=False,
        bint follow_symlink=False,
        double valid_for=1.0,
        Py_ssize_t max_entries=10_000,
        Py_ssize_t max_bytes=64 * 1024 * 1024,
        Py_ssize_t max_body=256 * 1024,
        bint precompressed=False,
        bint dotfiles=True,
        object cache_policy=None,
        bint etag=True,
        bint modified_since_exact=False,
        bint spa=False,
        object error_pages=None,
        object encoder=None,
        bint listing=False,
        bint file_slash=True,
    ):
        self.configured_roots = tuple(os.path.abspath(os.fspath(root)) for root in roots)
        self.encoded_roots = tuple(map(os.fsencode, self.configured_roots))
        self.root_stamps = _root_stamps(self.encoded_roots)
        self.roots = self.configured_roots if follow_symlink else tuple(map(os.path.realpath, self.configured_roots))
        self.roots_resolved_at = monotonic()
        self.html = html
        self.follow_symlink = follow_symlink
        self.valid_for = valid_for
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_body = max_body
        self.precompressed = precompressed
        self.dotfiles = dotfiles
        self.file_slash = file_slash
        self.cache_policy = cache_policy
        self.etag = etag
        self.modified_since_exact = modified_since_exact
        self.spa = spa
        self.error_pages = {int(code): str(page) for code, page in dict(error_pages or {}).items()}
        self.encoder = encoder
        self.listing = listing
        self.held_bytes = 0
        self.entries = {}

    def __len__(self):
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.held_bytes = 0

    cpdef CacheEntry lookup(self, str path):
        """The entry for a decoded URL path (``/a/b.txt``), from the cache when fresh."""
        cdef CacheEntry entry
        cdef double now = monotonic()
        if now - self.roots_resolved_at >= self.valid_for:
            self._resolve_roots(now)
        entry = self.entries.get(path)
        if entry is not None:
            if now - entry.checked_at < self.valid_for:
                if (entry.file is None and entry.variants is None) or _sent_files_unchanged(entry):
                    self.hits += 1
                    return entry
            elif self._unchanged(path, entry):
                entry.checked_at = now
                self.hits += 1
                return entry
            self._forget(path, entry)
        self.misses += 1
        entry = self._build(path)
        entry.checked_at = now
        if entry.status != 503:  # out of descriptors: answered, never kept
            self._store(path, entry)
        return entry

    cdef void _resolve_roots(self, double now):
        """Resolve the roots again, as often as entries are checked (``valid_for``): a root that
        is a symlink swapped to a new release (``ln -sfn v2 current``, the atomic deploy nginx
        follows) is served from its new target from then on, the old tree's entries dropped.
        With ``follow_symlink`` the roots are kept as given, and the path walks them anew.

        Each root is first ``stat``'ed (one call, no path walk in Python): while every root
        still names the directory it named (device and inode), nothing was swapped and the
        ``realpath`` walk is skipped. The library ``StaticFiles`` checks on every request."""
        self.roots_resolved_at = now
        if self.follow_symlink:
            return
        stamps = _root_stamps(self.encoded_roots)
        if stamps is not None and stamps == self.root_stamps:
            return
        self.root_stamps = stamps
        roots = tuple(map(os.path.realpath, self.configured_roots))
        if roots != self.roots:
            self.roots = roots
            self.clear()

    cdef bint _unchanged(self, str path, CacheEntry entry):
        """Whether ``path`` still leads to the file ``entry`` was built from, unchanged.

        The path is looked up again, not just the file re-stat'ed, so a file that now shadows
        it in an earlier root, or a symlink on the way that now points elsewhere, is seen too:
        the first root where ``path`` exists must lead (through any symlinks) to the same,
        unchanged inode, which was checked to lie inside the roots when the entry was built.
        A directory's index is looked up in full. Misses, redirects and refusals are simply
        built again: that costs the same lookup.
        """
        if entry.kind != ENTRY_FILE:
            return False
        cdef str rel = "/".join(split_url_path(path))
        st = None
        try:
            for root in self.roots:
                try:
                    st = os.stat(root + "/" + rel if rel else root)
                    break
                except (FileNotFoundError, NotADirectoryError):
                    continue
            if st is not None and S_ISDIR(st.st_mode):
                found = self._locate(split_url_path(path))
                st = found[1] if found is not None and found[0] == entry.path else None
        except OSError:
            return False
        if st is None or _identity(st) != _identity(entry.stat):
            return False
        return not self.precompressed or self._sibling_signature(entry.path) == entry.variant_signature

    cdef object _locate(self, tuple parts):
        """``(full_path, stat_result, via_index)`` for ``parts``: what the first root holding
        them has there, a directory standing for its ``index.html`` in html mode
        (``via_index``); None when nothing is there (or a directory without an index).
        ``OSError`` (``PermissionError``, ``ENAMETOOLONG``...) propagates."""
        found = resolve_path(self.roots, parts, self.follow_symlink)
        if found is None:
            return None
        if S_ISDIR(found[1].st_mode):
            index = self._directory_index(parts) if self.html else None
            if index is None:
                return (found[0], found[1], True) if self.listing else None
            return (index[0], index[1], True)
        return (found[0], found[1], False)

    cdef tuple _sibling_signature(self, str full_path):
        """What the precompressed siblings look like now (absent ones as None)."""
        cdef list signature = []
        for suffix, coding in SIBLINGS:
            try:
                signature.append(_identity(os.stat(full_path + suffix)))
            except OSError:
                signature.append(None)
        return tuple(signature)

    cdef CacheEntry _file_with_variants(self, str full_path, bytes content_type, bytes cache_control):
        """A file entry and its precompressed siblings, each a representation of its own.

        A sibling last modified before the file is stale (the file changed after it was
        compressed): it is left out, so every client gets the file's current content."""
        cdef list variants = []
        cdef CacheEntry entry, variant
        signature = self._sibling_signature(full_path)
        entry = _file_entry(full_path, 200, self.max_body, content_type, None, False, cache_control, self.etag)
        for (suffix, coding), seen in zip(SIBLINGS, signature):
            if seen is None or not S_ISREG(seen[5]):  # (its mode): a FIFO is never opened
                continue
            if seen[3] < entry.mtime_ns:  # (its mtime): older than the file
                continue
            sibling = full_path + suffix
            if not self.follow_symlink and not self._contained(os.path.realpath(sibling)):
                continue  # a sibling that links outside the roots is not served
            try:
                variant = _file_entry(
                    sibling, 200, self.max_body, content_type, coding.encode(), True, cache_control, self.etag
                )
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    raise  # not a sibling that is unreadable: the whole lookup is answered 503
                continue
            variants.append((coding, variant))
        entry.variant_signature = signature
        if variants:
            _set_file_fields(entry, True)  # Vary: Accept-Encoding
            entry.variants = tuple(variants)
            entry.representations = [None, None, None]
            for coding, variant in variants:
                entry.held += variant.held
                index = CODINGS.index(coding)
                entry.representations[index] = variant
                entry.offered |= 1 << index
        return entry

    cdef bint _contained(self, str real_path):
        for root in self.roots:
            if is_within(real_path, root):
                return True
        return False

    cdef void _store(self, str path, CacheEntry entry):
        cdef CacheEntry oldest
        if entry.held > self.max_bytes:
            return
        while self.entries and (
            len(self.entries) >= self.max_entries or self.held_bytes + entry.held > self.max_bytes
        ):
            oldest_path = next(iter(self.entries))
            self._forget(oldest_path, self.entries[oldest_path])
            self.evictions += 1
        self.entries[path] = entry
        self.held_bytes += entry.held

    cdef void _forget(self, str path, CacheEntry entry):
        del self.entries[path]
        self.held_bytes -= entry.held

    cdef CacheEntry _build(self, str path):
        cdef CacheEntry entry
        parts = split_url_path(path)
        if parts is None or (not self.dotfiles and is_hidden(parts)):
            return self._missing()
        try:
            found = self._locate(parts)
            if found is not None and found[2] and not names_directory(path):
                entry = CacheEntry()
                entry.kind = ENTRY_REDIRECT
                entry.status = 301  # the slash form is the directory's one URL, as nginx redirects
                entry.path = found[0]
                entry.body = b""
                _set_fields(entry, [])
                return entry
            if found is not None and S_ISDIR(found[1].st_mode):
                return self._listing(found[0], found[1])
            if found is None or not S_ISREG(found[1].st_mode):
                if self.spa and (not parts or "." not in parts[len(parts) - 1]):
                    found = resolve_path(self.roots, ("index.html",), self.follow_symlink)
                    if found is not None and S_ISREG(found[1].st_mode):
                        return self._file(found[0], ("index.html",))
                return self._missing()
            if not found[2] and not self.file_slash and names_directory(path):
                return self._missing()  # a file is no directory
            return self._file(found[0], parts + ("index.html",) if found[2] else parts)
        except _PolicyFailed as exc:
            logger.error("%s; answering 500", exc)
            return _plain_entry(ENTRY_MISSING, 500, INTERNAL_ERROR_BODY, b"text/plain; charset=utf-8")
        except PermissionError:
            entry = self._error_page(403)
            if entry is not None:
                return entry
            return _plain_entry(ENTRY_FORBIDDEN, 403, FORBIDDEN_BODY, b"text/plain; charset=utf-8")
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                entry = _plain_entry(ENTRY_MISSING, 503, UNAVAILABLE_BODY, b"text/plain; charset=utf-8")
                _set_fields(entry, entry.fields + [(b"retry-after", b"1")])
                return entry
            # ENAMETOOLONG, ELOOP, a file vanishing between stat and open: all are "not here".
            return self._missing()

    cdef CacheEntry _file(self, str full_path, tuple url_parts):
        """The 200 entry for ``full_path``, served at ``url_parts``: its fields carry the cache
        policy's ``Cache-Control`` for that URL path, decided here once for the entry's life."""
        content_type = content_type_for(full_path).encode("latin-1")
        cache_control = None
        if self.cache_policy is not None:
            url_path = "/" + "/".join(url_parts)
            try:
                cache_control = self.cache_policy(url_path, content_type)
            except Exception as exc:
                raise _PolicyFailed(f"the cache policy failed for {url_path}: {exc!r}") from exc
            if cache_control is not None and not is_field_value(cache_control):
                # Written as it is, a CR or LF would end the Cache-Control line and start another.
                raise _PolicyFailed(f"the cache policy answered {cache_control!r} for {url_path}: a Cache-Control "
                                    f"value is bytes without CR, LF or NUL")
        cdef CacheEntry entry
        if self.precompressed:
            entry = self._file_with_variants(full_path, content_type, cache_control)
        else:
            entry = _file_entry(full_path, 200, self.max_body, content_type, None, False, cache_control, self.etag)
        entry.modified_since_exact = self.modified_since_exact
        if entry.variants is None and self.encoder is not None and self.encoder.encodable(entry.content_type, entry.size):
            entry.encoder = self.encoder
            entry.offered = self.encoder.offered
            entry.representations = [None, None, None]
            _set_file_fields(entry, True)
            self.encoder.adopt(entry)
        for coding, variant in entry.variants or ():
            (<CacheEntry>variant).modified_since_exact = self.modified_since_exact
        return entry

    cdef object _directory_index(self, tuple parts):
        found = resolve_path(self.roots, parts + ("index.html",), self.follow_symlink)
        if found is not None and S_ISREG(found[1].st_mode):
            return found
        return None

    cdef CacheEntry _listing(self, str full_path, object st):
        """The entry for a directory to list: its path and stat, no answer of its own."""
        cdef CacheEntry entry = CacheEntry()
        entry.kind = ENTRY_LISTING
        entry.status = 200
        entry.path = full_path
        entry.stat = st
        entry.mtime = <long long>st.st_mtime
        entry.body = b""
        _set_fields(entry, [])
        return entry

    cdef CacheEntry _missing(self):
        cdef CacheEntry entry = self._error_page(404)
        if entry is not None:
            return entry
        return _plain_entry(ENTRY_MISSING, 404, NOT_FOUND_BODY, b"text/plain; charset=utf-8")

    cdef CacheEntry _error_page(self, int status):
        """The page answering ``status`` (404 or 403) from the roots: ``error_pages``' own, else
        ``404.html`` for a 404 in html mode; None when there is none (or it is not a readable
        regular file of at most ``ERROR_PAGE_MAX_BODY`` bytes, or ``max_body`` when larger: a
        page is always answered from memory)."""
        page = self.error_pages.get(status) if self.error_pages else None
        if page is None and status == 404 and self.html:
            page = "404.html"
        if page is None:
            return None
        parts = split_url_path(page)
        if not parts:
            return None
        cdef CacheEntry entry
        cdef Py_ssize_t limit = max(self.max_body, ERROR_PAGE_MAX_BODY)
        try:
            found = resolve_path(self.roots, parts, self.follow_symlink)
            if found is None or not S_ISREG(found[1].st_mode) or found[1].st_size > limit:
                return None
            entry = _file_entry(found[0], status, limit, None, None, False, None, False)
        except OSError:
            return None
        entry.kind = ENTRY_MISSING if status == 404 else ENTRY_FORBIDDEN
        # The page stands in for a missing or refused resource: no validators (RFC 9110 section
        # 13.2.1 has preconditions ignored for such answers) and no Accept-Ranges (ranges are
        # only ever honoured on a 200), so no client revalidates or resumes it.
        entry.last_modified = None
        _set_fields(entry, [pair for pair in entry.fields if pair[0] in ERROR_PAGE_FIELDS])
        return entry


cpdef CacheEntry described_file(str path, object stat_result, list fields, int status=200):
    """An entry for one file sent with fields its caller chose (``FileResponse``: Starlette's
    header set and the app's own headers), for ``staticanswer.decide`` to answer on.

    ``fields``: ``(lowercase name, value)`` pairs, sent as they are (the list itself is kept);
    the ETag (the If-Range validator) and the Content-Type (the type of each part of a
    multipart/byteranges answer) are read from them, the size and modification time from
    ``stat_result`` (an ``os.stat_result``). Nothing is opened or read: the answer's slices
    are read by the caller. ``status`` is what a whole answer is sent with.
    """
    cdef CacheEntry entry = CacheEntry()
    entry.kind = ENTRY_FILE
    entry.status = status
    entry.path = path
    entry.stat = stat_result
    entry.size = stat_result.st_size
    entry.mtime = <long long>stat_result.st_mtime
    for name, value in fields:
        if name == b"etag":
            entry.etag = value
        elif name == b"last-modified":
            entry.last_modified = value
        elif name == b"content-type":
            entry.content_type = value
    if entry.content_type is None:
        entry.content_type = b"application/octet-stream"
    _set_fields(entry, fields)
    return entry
