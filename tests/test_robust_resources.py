"""Resource hygiene: RSS stays flat over 10^5 calls of each op and Packed* object, the thread pool survives
fork (a forked child, a fork while another thread is mid-call, a multiprocessing pool) and interpreter
exit, and Python threads sharing Packed* objects while another thread changes set_num_threads/set_isa
get the single-threaded results without deadlock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import qkern
from conftest import rand_q
from qkern import _backend

pytestmark = pytest.mark.skipif(_backend.core is None, reason="qkern._core is not built")

CALLS = 100_000
RSS_GROWTH_LIMIT = 4 << 20  # 4 MiB over 10^5 calls: a leak of 42 bytes per call or more fails


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _ops(rng):
    a, b = rand_q(rng, np.uint8, (2, 8)), rand_q(rng, np.int8, (8, 3))
    x3, w3 = rand_q(rng, np.uint8, (1, 3, 3, 2)), rand_q(rng, np.int8, (2, 3, 3, 2))
    x2, w2 = rand_q(rng, np.int8, (1, 2, 2, 3)), rand_q(rng, np.uint8, (3, 2, 2, 2))
    rq = qkern.Requant(2**30, -3, 5)
    pg, pc, pd = (
        qkern.PackedGemm(b, np.arange(3), None, rq),
        qkern.PackedConv3x3(w3, 2),
        qkern.PackedConvTranspose2x2(w2),
    )
    return {
        "gemm": lambda: qkern.gemm(a, b, a_zero_point=3),  # each plain call packs: ~40 us, the bulk of the test
        "conv3x3": lambda: qkern.conv3x3(x3, w3, x_zero_point=1, bias=np.arange(2, dtype=np.int32)),
        "conv_transpose2x2": lambda: qkern.conv_transpose2x2(x2, w2, w_zero_point=7),
        "PackedGemm": lambda: pg(a, a_zero_point=2),
        "PackedConv3x3": lambda: pc(x3[:, :, ::-1]),  # a negative-stride view: the copy path too
        "PackedConvTranspose2x2": lambda: pd(x2, out=np.empty((1, 4, 4, 2), np.int32)),
    }


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
@pytest.mark.parametrize("op", list(_ops(np.random.default_rng(0))))
def test_rss_is_flat_over_1e5_calls(op, rng):
    call = _ops(rng)[op]
    first = call()
    for _ in range(2000):  # warm up: allocator pools, packed-weight caches, the thread pool
        call()
    before = _rss_bytes()
    for _ in range(CALLS):
        call()
    growth = _rss_bytes() - before
    np.testing.assert_array_equal(call(), first)
    assert growth < RSS_GROWTH_LIMIT, f"{op}: RSS grew by {growth} bytes over {CALLS} calls"


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


FORK_PRELUDE = """
    import os, threading
    import numpy as np
    import qkern
    qkern.set_num_threads(2)
    a = (np.arange(256 * 256) % 251).astype(np.uint8).reshape(256, 256)
    b = (np.arange(256 * 256) % 253 - 126).astype(np.int8).reshape(256, 256)
    want = qkern.reference.gemm(a, b, 3, -2)

    def ok():
        return bool(np.array_equal(qkern.gemm(a, b, a_zero_point=3, b_zero_point=-2), want))

    def child_status(body):
        pid = os.fork()
        if pid == 0:
            try:
                os._exit(0 if body() else 3)
            except BaseException:
                os._exit(4)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_thread_pool_survives_fork():
    """Children forked after parallel calls (and one forked while another thread is mid-call) run parallel
    calls, resize the pool and exit normally; each step is bounded by the subprocess timeout."""
    r = _run(
        FORK_PRELUDE
        + """
    assert ok()

    def child():
        good = all(ok() for _ in range(20))
        qkern.set_num_threads(1)
        good &= ok()
        qkern.set_num_threads(2)
        return good and all(ok() for _ in range(20))

    statuses = [child_status(child) for _ in range(8)]
    stop = threading.Event()
    busy = threading.Thread(target=lambda: [ok() for _ in iter(stop.is_set, True)])
    busy.start()
    statuses += [child_status(child) for _ in range(8)]
    stop.set()
    busy.join()
    print(statuses, ok())
    """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("]")[0] == "[" + ", ".join(["0"] * 16) and r.stdout.strip().endswith("True"), r.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_pool_with_packed_objects():
    """Packed objects sent to a fork-based multiprocessing pool (pickled: repacked in the worker) and used
    from the inherited module state both give the parent's results."""
    r = _run(
        FORK_PRELUDE
        + """
    import multiprocessing as mp
    packed = qkern.PackedGemm(b, -2)

    def work(args):
        p, i = args
        return bool(np.array_equal(p(a[i:], a_zero_point=3), want[i:])) and ok()

    with mp.get_context("fork").Pool(2) as workers:
        print(all(workers.map(work, [(packed, i) for i in range(6)])))
    """
    )
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr + r.stdout


def test_interpreter_exit_right_after_parallel_calls_is_clean():
    r = _run(
        FORK_PRELUDE.replace("    import os, threading\n", "    import os, threading, sys\n")
        + """
    threads = [threading.Thread(target=ok) for _ in range(4)]
    for t in threads:
        t.start()
    print(ok())
    """,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == "True" and r.stderr == "", r.stderr


def test_shared_packed_objects_under_concurrent_runtime_changes(rng):
    """8 threads call shared Packed* objects while another flips set_num_threads and set_isa: every result
    equals the single-threaded one, and everything finishes in bounded time."""
    b = rand_q(rng, np.int8, (96, 40))
    w3, w2 = rand_q(rng, np.int8, (24, 3, 3, 16)), rand_q(rng, np.uint8, (16, 2, 2, 24))
    a, x3, x2 = (
        rand_q(rng, np.uint8, (70, 96)),
        rand_q(rng, np.uint8, (1, 12, 10, 16)),
        rand_q(rng, np.int8, (2, 5, 6, 16)),
    )
    objs = [(qkern.PackedGemm(b, 3), a), (qkern.PackedConv3x3(w3, -1), x3), (qkern.PackedConvTranspose2x2(w2, 9), x2)]
    old_isa, old_threads = qkern.get_isa(), qkern.get_num_threads()
    qkern.set_num_threads(1)
    wants = [p(x, x_zero_point=5) if not isinstance(p, qkern.PackedGemm) else p(x, a_zero_point=5) for p, x in objs]
    stop = threading.Event()
    failures: list[str] = []

    def caller(k: int) -> None:
        p, x = objs[k % 3]
        kw = {"a_zero_point": 5} if isinstance(p, qkern.PackedGemm) else {"x_zero_point": 5}
        for i in range(60):
            if not np.array_equal(p(x, **kw), wants[k % 3]):
                failures.append(f"thread {k} call {i}")

    def flipper() -> None:
        isas = qkern.available_isas()
        i = 0
        while not stop.is_set():
            qkern.set_num_threads(1 + i % 2)
            qkern.set_isa(isas[i % len(isas)])
            i += 1

    try:
        flip = threading.Thread(target=flipper)
        callers = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        flip.start()
        for t in callers:
            t.start()
        for t in callers:
            t.join(timeout=120)
        stop.set()
        flip.join(timeout=30)
        assert not any(t.is_alive() for t in [*callers, flip]), "a thread did not finish: deadlock"
    finally:
        stop.set()
        qkern.set_isa(old_isa)
        qkern.set_num_threads(old_threads)
    assert failures == []
