"""Command-line tools built on the library: the `qkern` CLI, benchmarks, validation against peers, perf smoke.

Nothing here is library API; `import qkern` does not import this package.
"""
