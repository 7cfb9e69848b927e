"""Benchmarks: each module here is one `search-eval bench <name>` (its `main(argv)`), and all share
the summary statistics of `eval.bench.stats` and the result files of `eval.bench.results`.

Speed and memory figures come from these runs, never from timed assertions in the test suite.
"""
