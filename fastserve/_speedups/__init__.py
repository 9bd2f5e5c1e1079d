"""Cython hot paths: path lookup + file cache, header parsing, conditional checks, the protocol."""
