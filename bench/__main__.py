"""`make bench` (= `.venv/bin/python -m bench`): the benchmarks, with their figures on stdout.

    .venv/bin/python -m bench                 # timing and capacity: our agent beside stock pyVoIP
                                              # at 20, 50, 100 calls, then ours at 150 and 200 (~8 min)
    .venv/bin/python -m bench --soak          # ... and 10,000 calls one after another (+ ~9 min)
    .venv/bin/python -m bench --detector      # ... and the line-detector bench (bench.detector)
    .venv/bin/python -m bench --callback-queue  # ... and the callback queue bench (bench.callback_queue)
    .venv/bin/python -m bench --register-scale  # ... and the register at a million calls (slow)
    .venv/bin/python -m bench --all           # everything
    .venv/bin/python -m bench --no-load --soak  # only the soak

Options after `--` go to bench.load (e.g. `-- --calls 20,50 --capacity ''`).  Each bench other
than the load runs as its own process; the exit status is non-zero if any of them failed.
Results go to docs/benchmarks.md by hand, with the date and the load average the run printed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _module(name: str, args: list[str]) -> int:
    print(f"\n===== python -m {name} {' '.join(args)}".rstrip(), flush=True)
    t0 = time.monotonic()
    rc = subprocess.run([sys.executable, "-m", name, *args], cwd=REPO).returncode
    print(f"===== {name}: exit {rc}, {(time.monotonic() - t0) / 60:.1f} min", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--soak", action="store_true", help="add bench.soak (10,000 calls)")
    ap.add_argument("--detector", action="store_true", help="add bench.detector --markdown")
    ap.add_argument("--callback-queue", action="store_true", help="add bench.callback_queue")
    ap.add_argument("--register-scale", action="store_true", help="add bench.register_scale (slow)")
    ap.add_argument("--all", action="store_true", help="all of the above")
    ap.add_argument("--no-load", action="store_true", help="skip the timing/capacity comparison")
    ap.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    results: dict[str, int] = {}
    gate = ["--no-gate"] if args.no_gate else []
    if not args.no_load:
        from bench import load
        print("===== python -m bench.load " + " ".join(gate + extra), flush=True)
        results["load"] = load.main(gate + extra)
    if args.soak or args.all:
        results["soak"] = _module("bench.soak", gate)
    if args.detector or args.all:
        results["detector"] = _module("bench.detector", ["--markdown"])
    if args.callback_queue or args.all:
        results["callback_queue"] = _module("bench.callback_queue", [])
    if args.register_scale or args.all:
        results["register_scale"] = _module("bench.register_scale", [])
    summary = ", ".join(f"{k} " + ("ok" if v == 0 else f"exit {v}") for k, v in results.items())
    print(f"\nbench: {summary}; total {(time.monotonic() - t0) / 60:.1f} min")
    return 0 if all(v == 0 for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
