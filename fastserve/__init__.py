"""fastserve: a Cython-compiled uvloop + httptools server for static files and ASGI apps."""

__version__ = "0.1.0"
