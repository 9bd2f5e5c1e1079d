cpdef object percent_decode(bytes raw)
cpdef object origin_form(bytes target)
cpdef object split_url_path(str path)
cpdef object resolve_path(tuple roots, tuple parts, bint follow_symlink)
