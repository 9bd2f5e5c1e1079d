"""fastserve's drop-in StaticFiles over $BENCH_ROOT, wrapped exactly like the Starlette baseline."""
import os

from starlette.middleware.exceptions import ExceptionMiddleware

from fastserve.staticfiles import StaticFiles

app = ExceptionMiddleware(StaticFiles(directory=os.environ["BENCH_ROOT"], html=True))
