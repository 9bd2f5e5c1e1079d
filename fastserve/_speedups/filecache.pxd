cdef enum EntryKind:
    ENTRY_FILE = 1        # a regular file (or a directory's index.html)
    ENTRY_MISSING = 2     # 404, with the 404.html body in html mode
    ENTRY_REDIRECT = 3    # a directory asked for without its trailing slash (it has an index or a listing)
    ENTRY_FORBIDDEN = 4   # the filesystem refused (PermissionError) -> 403 (StaticFiles: 401)
    ENTRY_LISTING = 5     # a directory without index, with listings on: answered by fastserve.listing


cdef class OpenFile:
    cdef readonly int fd
    cdef readonly str path  # as it was opened (for what is logged of it)
    # what fstat said of the file when it was opened (nanoseconds for the times)
    cdef long long size, mtime_ns, ctime_ns
    cdef bint regular
    cpdef bint unchanged(self)
    cpdef bint content_unchanged(self)


cpdef bint descriptor_unchanged(int fd, long long size, long long mtime_ns, long long ctime_ns=*)
cpdef OpenFile open_to_send(str path)


cdef class CacheEntry:
    cdef readonly int kind
    cdef readonly int status
    cdef readonly str path
    cdef readonly object stat
    cdef readonly long long size
    cdef readonly long long mtime
    cdef readonly bytes etag
    cdef readonly bytes last_modified
    cdef readonly bytes content_type
    cdef readonly bint modified_since_exact  # how If-Modified-Since is compared (the cache's setting)
    cdef readonly bytes coding              # Content-Encoding of an encoded representation, else None
    cdef readonly bytes cache_control       # the cache policy's Cache-Control value, or None
    # The one list of fields every answer about this representation draws on, as
    # (lowercase name, value) pairs (their ASGI rendering), and the subset a 304 or a 416
    # repeats; wire_* are their wire renderings, made once.
    cdef readonly list fields
    cdef readonly list not_modified_fields
    cdef readonly bytes wire_fields
    cdef readonly bytes wire_not_modified
    cdef readonly bytes body
    cdef readonly OpenFile file
    cdef double checked_at
    cdef long long mtime_ns
    cdef long long ino
    cdef Py_ssize_t held
    # precompressed siblings: ((coding, CacheEntry), ...) best first, or None
    cdef readonly tuple variants
    cdef tuple variant_signature
    # The encoded representations by coding index (0 br, 1 zstd, 2 gzip; headers.negotiate_coding),
    # None for a file that has none: a slot holds the representation, None while it is not made
    # (yet), or this entry itself when that coding is not worth it. ``offered`` is the mask of
    # codings the file can be given; ``encoder`` (a compression.EncodedCache) makes the missing
    # ones for a file compressed on the fly, and None for precompressed siblings.
    cdef public list representations
    cdef readonly int offered
    cdef readonly object encoder
    cdef public bint used                   # answered since the encoder last looked (its eviction clock)
    cdef object __weakref__                 # the encoder refers to the entries it fills weakly
    cdef readonly long long saved           # an on-the-fly encoding: bytes it saves over the file
    # the protocol's memo of whole responses for the common case, rebuilt when Date changes
    cdef public bytes memo_date
    cdef public bytes memo_whole            # head and body; the head alone when body is None
    cdef public bytes memo_not_modified


cpdef CacheEntry choose_representation(CacheEntry entry, bytes accept_encoding)
cpdef CacheEntry described_file(str path, object stat_result, list fields, int status=*)
cpdef CacheEntry encoded_entry(CacheEntry entry, int index, bytes body)


cdef class FileCache:
    cdef readonly tuple roots                # absolute, real unless follow_symlink: resolved again (see lookup)
    cdef readonly tuple configured_roots     # absolute, as given: a symlink among them stays one
    cdef double roots_resolved_at            # monotonic time roots were last resolved
    cdef tuple encoded_roots                 # configured_roots as bytes, for stat()
    cdef tuple root_stamps                   # (device, inode) each named when last resolved; None: unknown
    cdef readonly bint html
    cdef readonly bint follow_symlink
    cdef readonly double valid_for
    cdef readonly Py_ssize_t max_entries
    cdef readonly Py_ssize_t max_bytes
    cdef readonly Py_ssize_t max_body
    cdef readonly Py_ssize_t held_bytes
    cdef readonly bint precompressed
    cdef readonly bint dotfiles
    cdef readonly bint etag                  # files get an ETag
    cdef readonly bint modified_since_exact  # If-Modified-Since: 304 only for the exact date
    cdef readonly bint spa                   # unknown extension-less paths -> /index.html
    cdef readonly dict error_pages           # status -> page path below the roots
    cdef readonly bint listing               # a directory without index is an ENTRY_LISTING (not 404)
    cdef readonly bint file_slash            # a file asked for with a trailing slash is served (not 404)
    cdef readonly object cache_policy   # URL path, content type -> Cache-Control value or None
    cdef readonly object encoder        # compression.EncodedCache: on-the-fly compression, or None
    cdef dict entries
    # lookups answered from the cache, lookups that (re)built an entry, entries pushed out by the bounds
    cdef readonly long long hits
    cdef readonly long long misses
    cdef readonly long long evictions
    cpdef CacheEntry lookup(self, str path)
    cdef void _resolve_roots(self, double now)
    cdef CacheEntry _build(self, str path)
    cdef bint _unchanged(self, str path, CacheEntry entry)
    cdef object _locate(self, tuple parts)
    cdef void _store(self, str path, CacheEntry entry)
    cdef void _forget(self, str path, CacheEntry entry)
    cdef object _directory_index(self, tuple parts)
    cdef CacheEntry _missing(self)
    cdef CacheEntry _listing(self, str full_path, object st)
    cdef CacheEntry _error_page(self, int status)
    cdef tuple _sibling_signature(self, str full_path)
    cdef CacheEntry _file(self, str full_path, tuple url_parts)
    cdef CacheEntry _file_with_variants(self, str full_path, bytes content_type, bytes cache_control)
    cdef bint _contained(self, str real_path)
