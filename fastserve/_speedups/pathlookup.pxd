from libc.string cimport memchr


cdef inline bytes without_fragment(bytes target):
    """``target`` up to a ``#``: a request-target carries no fragment (RFC 9112 section 3.2),
    so one a client sends anyway is dropped, as nginx and uvicorn drop it. Inline: the static
    fast path asks it for every request."""
    cdef const char* start = target
    cdef const char* mark = <const char*>memchr(start, b"#", len(target))
    return target if mark == NULL else target[:mark - start]


cpdef object percent_decode(bytes raw)
cpdef object origin_form(bytes target)
cpdef object split_url_path(str path)
cpdef bint names_directory(str path)
cpdef bint has_dot_segment(str path)
cpdef bytes raw_path_prefix(str root_path)
cpdef str directory_path(tuple parts)
cpdef bint is_hidden(tuple parts)
cpdef bint is_within(str path, str root)
cpdef object resolve_path(tuple roots, tuple parts, bint follow_symlink)
