"""A sampling profiler for the live system's jobs, loaded by Python at start-up when this folder
is on PYTHONPATH (benchmarks/live_latency.py --profile DIR puts it there for `streamforge up`).

In a `streamforge run ...` process it samples every thread's stack every 5 ms and, every 30 s
and at exit, writes DIR/profile-<job>-<pid>.txt: per thread, the share of samples in which each
function was on the stack (inclusive) and innermost (self), so where the one worker thread of
the local runner spends its time can be read, not guessed. Other processes are left alone.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import time

_DIR = os.environ.get("STREAMFORGE_PROFILE_DIR")
_EVERY_S = 0.005


def _label(code) -> str:
    path = code.co_filename
    for marker in ("site-packages/", "/work/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{code.co_qualname} ({path}:{code.co_firstlineno})"


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


def _start() -> None:
    argv = sys.orig_argv if hasattr(sys, "orig_argv") else sys.argv
    if not _DIR or "streamforge" not in argv or "run" not in argv:
        return
    at = argv.index("run")
    following = argv[at + 1] if at + 1 < len(argv) else "-"
    job = following if not following.startswith("-") else f"{argv[at - 1]}-run"  # `run all`; `cdc run`
    path = os.path.join(_DIR, f"profile-{job}-{os.getpid()}.txt")
    threading.Thread(target=_sample, args=(path,), name="sampling-profiler", daemon=True).start()


_start()
