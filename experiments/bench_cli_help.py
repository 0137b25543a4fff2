"""Wall time of ``exante --help`` and sub-command help, each in a fresh Python process.

    python experiments/bench_cli_help.py [--runs 5] [--tree PATH]

``--tree`` times another checkout's ``predictor/cli.py`` (e.g. an older commit unpacked with
``git archive COMMIT predictor profiling | tar -x -C /tmp/old``) with this environment.
Prints the median and minimum per command, the load average, and whether torch was imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["predict", "--help"], ["estimate", "--help"], ["sweep", "--help"],
            ["features", "--help"], ["calc", "--help"])


def time_help(argv: list[str], tree: str | None, runs: int) -> tuple[list[float], bool]:
    prefix = f"sys.path.insert(0, {tree!r}); " if tree else ""
    code = (f"import sys; {prefix}sys.argv = ['exante'] + {argv!r}\n"
            "from predictor.cli.main import main\n"
            "try:\n    rc = main()\nexcept SystemExit as exc:\n    rc = exc.code\n"
            "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))\nsys.exit(rc)")
    times, torch_loaded = [], False
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"exante {' '.join(argv)} failed: {res.stderr[-500:]}")
        torch_loaded = "TORCH=True" in res.stderr
    return times, torch_loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", default=None, help="a checkout to time instead of the installed one")
    args = ap.parse_args()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"])
    print(f"python start-up alone: {(time.perf_counter() - t0) * 1000:.0f} ms")
    for argv in COMMANDS:
        ts, torch_loaded = time_help(argv, args.tree, args.runs)
        print(f"exante {' '.join(argv):18s} median {statistics.median(ts) * 1000:7.0f} ms   "
              f"min {min(ts) * 1000:7.0f} ms   torch imported: {torch_loaded}   (n={args.runs})")
    print("load average (1, 5, 15 min):", tuple(round(x, 2) for x in os.getloadavg()),
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
