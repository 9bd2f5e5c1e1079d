"""URL path -> a file path that is guaranteed to lie under one of the served roots.

Three steps, each usable on its own:

* ``percent_decode``  raw request-target bytes -> text, decoding ``%XX`` exactly once
  (so ``%252e`` becomes the literal ``%2e``, never ``.``); a ``%`` that does not start an
  escape makes the target invalid.
* ``split_url_path``  text path -> tuple of safe segments, its dot segments removed as
  RFC 3986 §5.2.4 removes them (``/dir/../a.txt`` is ``/a.txt``), or None when the path
  climbs above the root (``/../a.txt``), smuggles a NUL or a backslash, or names a drive;
  ``names_directory`` says whether it ends as a directory's path does (``/dir/``, ``/dir/.``).
* ``is_hidden``       segments -> whether one of them names a hidden file (``.env``,
  ``.git``), which a server denying dotfiles answers as missing.
* ``resolve_path``    segments -> ``(full_path, stat_result)`` under the first root holding
  them; unless symlinks may be followed, the real path must stay inside the real root.
"""
import os
from urllib.parse import quote

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr

from fastserve._speedups.charclass cimport hex_value
from fastserve._speedups.requesthead cimport host_value_valid

cdef object _stat = os.stat
cdef object _realpath = os.path.realpath
cdef str WELL_KNOWN = ".well-known"


cpdef object percent_decode(bytes raw):
    """Decode ``%XX`` escapes once and the result as UTF-8.

    None when the result is not UTF-8, or when a ``%`` is not followed by two hex digits
    (``/50%.txt``, ``/%zz``): RFC 3986 §2.1 allows ``%`` only as the start of an escape,
    so such a target is malformed and the caller answers ``400``, as nginx does.
    """
    cdef Py_ssize_t n = len(raw)
    cdef const char* src = raw
    cdef const unsigned char* usrc = <const unsigned char*>src
    cdef Py_ssize_t i = 0, j = 0
    cdef int hi, lo
    cdef char stack_buf[512]
    cdef char* dst
    try:
        if memchr(src, 37, n) == NULL:  # no '%': nothing to decode
            return PyUnicode_DecodeUTF8(src, n, NULL)
        if n <= 512:
            dst = &stack_buf[0]
        else:
            dst = <char*>PyMem_Malloc(n)
            if dst == NULL:
                raise MemoryError()
        try:
            while i < n:
                if usrc[i] == 37:
                    if i + 2 >= n:
                        return None
                    hi = hex_value(usrc[i + 1])
                    lo = hex_value(usrc[i + 2])
                    if hi < 0 or lo < 0:
                        return None
                    dst[j] = <char>(hi * 16 + lo)
                    j += 1
                    i += 3
                    continue
                dst[j] = src[i]
                j += 1
                i += 1
            return PyUnicode_DecodeUTF8(dst, j, NULL)
        finally:
            if dst != &stack_buf[0]:
                PyMem_Free(dst)
    except UnicodeDecodeError:
        return None


def target_without_fragment(bytes target) -> bytes:
    """Python view of ``without_fragment`` (pathlookup.pxd)."""
    return without_fragment(target)


cpdef object origin_form(bytes target):
    """The request-target as ``/path?query``, without a fragment; None for forms a file server
    cannot use.

    An absolute-form target (``http://host/path``, what proxies send) loses its scheme and
    authority; ``*`` and authority-form (CONNECT) targets give None, and so does an absolute
    form whose authority is no ``uri-host [":" port]``: it stands for the Host field (RFC 9112
    section 3.2.2) and is held to the same rule, so an empty host (RFC 9110 section 4.2.1),
    userinfo (section 4.2.4) or a broken IP literal (``http://[::1/``) is refused (400).
    """
    cdef Py_ssize_t start, end, query
    target = without_fragment(target)
    if len(target) > 0 and (<const char*>target)[0] == b"/":
        return target
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        start = 7
    elif lowered.startswith(b"https://"):
        start = 8
    else:
        return None
    end = target.find(b"/", start)
    query = target.find(b"?", start)
    if end < 0 or 0 <= query < end:
        end = len(target) if query < 0 else query
    if end == start or not host_value_valid(<const unsigned char*><const char*>target + start, end - start):
        return None
    if end == len(target) or (<const char*>target)[end] == b"?":
        return b"/" + target[end:]
    return target[end:]


cpdef object split_url_path(str path):
    """Split a decoded URL path into segments that are safe to join under a root.

    Empty segments are dropped (``//`` is ``/``, as nginx merges slashes), then the dot
    segments are removed as RFC 3986 section 5.2.4 removes them: ``.`` goes, ``..`` takes the
    segment before it with it (``/dir/../a.txt`` is ``("a.txt",)``, what nginx and Starlette
    serve for it). Returns None for a ``..`` with nothing left to take (the path would climb
    above the root), a NUL, a backslash, or a first segment that looks like a drive (``C:``),
    so no spelling of an escape reaches the filesystem.
    """
    cdef list parts = []
    cdef str segment
    if "\x00" in path or "\\" in path:
        return None
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(segment)
    if parts:
        segment = parts[0]
        if len(segment) >= 2 and segment[1] == ":" and segment[0].isalpha():
            return None
    return tuple(parts)


cpdef bint names_directory(str path):
    """Whether ``path`` ends as a directory's path does: in ``/``, or in a ``.`` or ``..``
    segment, which RFC 3986 section 5.2.4 turns into one (``/dir/.`` is ``/dir/``,
    ``/dir/sub/..`` is ``/dir/``). A directory asked for otherwise is redirected to it."""
    return path.endswith("/") or path.endswith("/.") or path.endswith("/..")


cpdef bint has_dot_segment(str path):
    """Whether a segment of ``path`` is ``.`` or ``..`` (RFC 3986 section 3.3)."""
    cdef str segment
    if "." not in path:
        return False
    for segment in path.split("/"):
        if segment == "." or segment == "..":
            return True
    return False


cpdef bytes raw_path_prefix(str root_path):
    """``root_path`` (``--root-path``) as it is put in front of a raw path (ASGI's ``raw_path``, a
    redirect's ``Location``): percent-encoded where a path may not hold it as it is (RFC 3986
    section 3.3)."""
    return quote(root_path, safe="/!$&'()*+,;=:@~").encode("ascii")


cpdef str directory_path(tuple parts):
    """The percent-encoded absolute path of the URL directory ``parts`` (``split_url_path``'s
    answer), ending in ``/``: each segment encoded whole, a ``%`` or ``?`` in a name included,
    so the path names exactly that directory again."""
    return "/" + "".join([quote(part, safe="") + "/" for part in parts])


cpdef bint is_hidden(tuple parts):
    """Whether a segment of ``parts`` (``split_url_path``'s answer) starts with ``.``.

    A first segment ``.well-known`` is not hidden (RFC 8615 well-known URIs: ACME challenges,
    ``security.txt``), but a dot-segment below it is.
    """
    cdef str segment
    cdef Py_ssize_t i
    for i in range(len(parts)):
        segment = parts[i]
        if segment.startswith(".") and not (i == 0 and segment == WELL_KNOWN):
            return True
    return False


cpdef bint is_within(str path, str root):
    """Whether absolute ``path`` is ``root`` itself or lies below it (not merely shares a prefix)."""
    if path == root:
        return True
    return path.startswith(root if root.endswith("/") else root + "/")


cpdef object resolve_path(tuple roots, tuple parts, bint follow_symlink):
    """First ``(full_path, stat_result)`` for ``parts`` under ``roots``, or None.

    ``roots`` must already be absolute (real paths unless ``follow_symlink``). Missing
    files move on to the next root; ``PermissionError`` and other ``OSError``s (such as
    ENAMETOOLONG) propagate so the caller can answer them.
    """
    cdef str rel = "/".join(parts)
    cdef str root, full, real
    for root in roots:
        full = root + "/" + rel if rel else root
        if not follow_symlink:
            real = _realpath(full)
            if not is_within(real, root):
                continue  # a symlink pointing outside the root
            full = real
        try:
            st = _stat(full)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return full, st
    return None
