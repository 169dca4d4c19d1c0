"""A sampling profiler for the live system's jobs, loaded by Python at start-up when this folder
is on PYTHONPATH (benchmarks/live_latency.py --profile DIR puts it there for `streamforge up`).

In a `streamforge run ...` process it samples every thread's stack every 5 ms and, every 30 s
and at exit, writes DIR/profile-<job>-<pid>.txt: per thread, the share of samples in which each
function was on the stack (inclusive) and innermost (self), so where the one worker thread of
the local runner spends its time can be read, not guessed. Other processes are left alone.

With STREAMFORGE_MEMORY_PROFILE_DIR set (live_latency.py --profile-memory DIR), the analytics
job (`run all`) traces its Python allocations (tracemalloc, 8 frames) and every minute writes
DIR/memory-all-<pid>-<minute>.txt (and -exit.txt): its resident memory beside what Python has
allocated, the lines that hold the most, and the call paths behind them. What RSS holds beyond
the traced total is native memory (DuckDB, Arrow, gRPC, the allocator's free lists). Tracing
slows the job several times over (even at 200 events/s it falls minutes behind and its
minutes stretch): it tells where memory goes, not how fast the job runs.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import time

_DIR = os.environ.get("STREAMFORGE_PROFILE_DIR")
_MEMORY_DIR = os.environ.get("STREAMFORGE_MEMORY_PROFILE_DIR")
_EVERY_S = 0.005
_MEMORY_EVERY_S = 60


def _label(code) -> str:
    return f"{code.co_qualname} ({_short(code.co_filename)}:{code.co_firstlineno})"


def _sample(out_path: str) -> None:
    inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    innermost: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    samples: collections.Counter = collections.Counter()
    me = threading.get_ident()

    def write() -> None:
        names = {t.ident: t.name for t in threading.enumerate()}
        with open(out_path, "w") as out:
            for ident, n in samples.most_common():
                name = names.get(ident, str(ident))
                out.write(f"=== thread {name}: {n} samples ({n * _EVERY_S:.0f} s)\n")
                out.write("   incl%  self%  function\n")
                for label, count in inclusive[ident].most_common(45):
                    own = innermost[ident][label]
                    out.write(f"  {100 * count / n:6.1f} {100 * own / n:6.1f}  {label}\n")

    atexit.register(write)
    next_write = time.monotonic() + 30
    while True:
        time.sleep(_EVERY_S)
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            samples[ident] += 1
            innermost[ident][_label(frame.f_code)] += 1
            seen = set()
            while frame is not None:
                label = _label(frame.f_code)
                if label not in seen:
                    seen.add(label)
                    inclusive[ident][label] += 1
                frame = frame.f_back
        if time.monotonic() >= next_write:
            write()
            next_write = time.monotonic() + 30


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _trace_memory(out_path: str) -> None:
    import tracemalloc

    started = time.monotonic()

    def write(suffix: str) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
        )
        traced = sum(stat.size for stat in snapshot.statistics("filename"))
        path = f"{out_path}-{suffix}.txt"
        with open(path + ".tmp", "w") as out:
            out.write(
                f"after {time.monotonic() - started:.0f} s: RSS {_rss_mb():,.0f} MB, "
                f"Python allocations traced {traced / 2**20:,.0f} MB\n\n  MB      count  line\n"
            )
            for stat in snapshot.statistics("lineno")[:40]:
                frame = stat.traceback[0]
                out.write(f"  {stat.size / 2**20:7.1f} {stat.count:9,}  {_short(frame.filename)}:{frame.lineno}\n")
            out.write("\ncall paths holding the most (innermost first)\n")
            for stat in snapshot.statistics("traceback")[:15]:
                out.write(f"\n  {stat.size / 2**20:7.1f} MB in {stat.count:,} blocks\n")
                for frame in stat.traceback:
                    out.write(f"      {_short(frame.filename)}:{frame.lineno}\n")
        os.replace(path + ".tmp", path)

    atexit.register(write, "exit")
    minute = 0
    while True:
        time.sleep(_MEMORY_EVERY_S)
        minute += 1
        write(f"{minute:03d}min")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _start() -> None:
    argv = sys.orig_argv if hasattr(sys, "orig_argv") else sys.argv
    if not (_DIR or _MEMORY_DIR) or "streamforge" not in argv or "run" not in argv:
        return
    at = argv.index("run")
    following = argv[at + 1] if at + 1 < len(argv) else "-"
    job = following if not following.startswith("-") else f"{argv[at - 1]}-run"  # `run all`; `cdc run`
    if _DIR:
        path = os.path.join(_DIR, f"profile-{job}-{os.getpid()}.txt")
        threading.Thread(target=_sample, args=(path,), name="sampling-profiler", daemon=True).start()
    if _MEMORY_DIR and job == "all":
        import tracemalloc

        tracemalloc.start(8)
        path = os.path.join(_MEMORY_DIR, f"memory-{job}-{os.getpid()}")
        threading.Thread(target=_trace_memory, args=(path,), name="memory-profiler", daemon=True).start()


_start()
