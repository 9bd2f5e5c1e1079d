"""ASGI apps that bench/run_bench.py runs under uvicorn (document root from $BENCH_ROOT)."""
