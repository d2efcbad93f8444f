"""Plain-Python twins of the native kernels: differential-test oracles and
the naive baselines the benchmarks compare against.  Slow by design."""
