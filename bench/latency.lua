-- Loaded by bench/run_bench.py with `wrk -s`: after the run, print the latency percentiles the
-- harness reads, in microseconds, one line each ("latency-percentile <p> <us>"), including
-- p99.9, which wrk's own --latency table leaves out. Only `done` is defined, so wrk keeps its
-- fast path (no Lua call per request).
done = function(summary, latency, requests)
   for _, p in ipairs({50, 90, 99, 99.9}) do
      io.write(string.format("latency-percentile %s %d\n", p, latency:percentile(p)))
   end
end
