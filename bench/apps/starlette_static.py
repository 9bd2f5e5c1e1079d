"""Starlette's StaticFiles over $BENCH_ROOT: the baseline the drop-in replaces.

The exception middleware turns a missing file into a plain 404, as it does inside any
Starlette or FastAPI app; a bare StaticFiles would let the server answer 500 instead.
"""
import os

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.staticfiles import StaticFiles

app = ExceptionMiddleware(StaticFiles(directory=os.environ["BENCH_ROOT"], html=True))
