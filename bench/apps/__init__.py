"""ASGI apps that bench/run_bench.py runs: the static-file apps under uvicorn (document root
from $BENCH_ROOT), and the hello-world app every server of the ASGI group runs."""
