"""supervise.py - runs a fuzz worker in child processes for a fixed time budget and counts what
happened: inputs, crashes (a signal), hangs (per-input watchdog), out-of-memory, unexpected errors.

A worker is `python WORKER --state DIR --seconds S --seed N`: before each input it writes the input
to DIR/current.bin, and it keeps DIR/stats.json up to date ({"inputs": n, "findings": [...]}).
A child that dies leaves current.bin, which is kept as the reproducer; a new child then goes on."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HANG_EXIT = 86  # the worker's watchdog (faulthandler) exit code, see worker_setup()


def worker_setup(state_dir: str, per_input_s: float, memory_mib: int) -> None:
    """Called by a worker at start: caps its address space (so an input that would take gigabytes
    raises MemoryError there instead of swapping the machine) and arms nothing yet."""
    import resource
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (memory_mib << 20), resource.RLIM_INFINITY))
    os.makedirs(state_dir, exist_ok=True)


class Watchdog:
    """Per-input hang detector: if one input runs longer than per_input_s the process dumps
    its stacks and exits with HANG_EXIT."""

    def __init__(self, per_input_s: float):
        import faulthandler
        self._fh, self._t = faulthandler, per_input_s

    def __enter__(self) -> "Watchdog":
        self._fh.dump_traceback_later(self._t, exit=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.cancel_dump_traceback_later()


def write_stats(state_dir: str, stats: dict) -> None:
    tmp = os.path.join(state_dir, "stats.json.tmp")
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, os.path.join(state_dir, "stats.json"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", required=True, help="the worker script")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--out", required=True, help="folder for the report and reproducers")
    ap.add_argument("--seed", type=int, default=0)
    a, worker_args = ap.parse_known_args()  # the rest goes to the worker
    os.makedirs(a.out, exist_ok=True)
    deadline = time.monotonic() + a.seconds
    totals = {"inputs": 0, "crashes": 0, "hangs": 0, "oom": 0, "errors": 0, "restarts": 0,
              "findings": [], "outcomes": {}}
    run = 0
    while True:
        left = deadline - time.monotonic()
        if left < 2:
            break
        state = os.path.join(a.out, f"run{run}")
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        cmd = [sys.executable, a.worker, "--state", state, "--seconds", f"{left:.1f}",
               "--seed", str(a.seed * 1000 + run)] + [x for x in worker_args if x != "--"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=left + 120)
        stats = {}
        try:
            with open(os.path.join(state, "stats.json")) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            pass
        totals["inputs"] += int(stats.get("inputs", 0))
        for k, v in stats.get("outcomes", {}).items():
            totals["outcomes"][k] = totals["outcomes"].get(k, 0) + v
        for k, v in stats.get("examples", {}).items():
            totals.setdefault("examples", {}).setdefault(k, []).extend(v[:3])
        for finding in stats.get("findings", []):
            totals["findings"].append(finding)
            kind = finding.get("kind", "errors")
            totals[kind if kind in totals else "errors"] += 1
        rc = proc.returncode
        if rc != 0:
            kind = "hangs" if rc == HANG_EXIT else "crashes"
            if rc < 0:
                what = f"killed by signal {signal.Signals(-rc).name}"
            else:
                what = f"exit code {rc}"
            repro = os.path.join(a.out, f"{kind}-{run}.bin")
            cur = os.path.join(state, "current.bin")
            if os.path.exists(cur):
                shutil.copy(cur, repro)
            totals[kind] += 1
            totals["findings"].append({"kind": kind, "what": what, "input": repro,
                                       "log": proc.stdout[-4000:]})
            totals["restarts"] += 1
            run += 1
            continue
        if stats.get("done"):
            break
        run += 1
    bad = totals["crashes"] + totals["hangs"] + totals["oom"] + totals["errors"]
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(totals, f, indent=1)
    name = os.path.basename(a.worker)
    print(f"{name}: {totals['inputs']} inputs in {a.seconds:.0f} s: {totals['crashes']} crashes, "
          f"{totals['hangs']} hangs, {totals['oom']} out-of-memory, {totals['errors']} other findings; "
          f"outcomes {json.dumps(totals['outcomes'], sort_keys=True)}")
    for finding in totals["findings"][:10]:
        print("  FINDING", json.dumps(finding)[:1500])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
