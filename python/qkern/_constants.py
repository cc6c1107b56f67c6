"""Numeric facts the Python package shares, each stated once."""

# The float32 machine epsilon, 2^-23: the smallest scale a quantizer may return (torch's observers use it).
FLOAT32_EPS = 2.0**-23

# The most threads the native thread pool accepts (csrc/qkern/threadpool.cc checks the same bound).
MAX_THREADS = 1024
