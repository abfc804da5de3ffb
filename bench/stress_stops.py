"""Stress check for the signal and stop tests (issue 22; not part of CI).

Runs the tests that stop a child process with a signal (SIGINT, SIGTERM, SIGKILL)
`--repeats` times while `--busy` busy-loop processes load the cores, with SIGINT
ignored in this process as a shell's background job has it (`make test &`):
the two conditions under which a sleep-then-signal test used to fail. Every
repeat is one pytest run; the result counts the runs that passed.

    python bench/stress_stops.py --repeats 20 --save bench/results/stress_stops.json

On a machine where one run takes minutes, several runners share the repeats (the
first one with the busy loops, the others `--busy 0`), each saving after every run;
`--merge A.json B.json ... --save OUT` adds them up.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hostinfo import cpu_model, report

ROOT = Path(__file__).resolve().parents[1]
TESTS = [  # every test that signals a child process it started (test/helpers_signals.py)
    "test/test_stops.py::test_sigterm_removes_the_staged_output_and_keeps_the_earlier_one",
    "test/test_stops.py::test_every_training_subcommand_stops_cleanly",
    "test/test_stops.py::test_a_partial_folder_left_by_sigkill_is_removed_by_the_next_run",
]


def _busy() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes")
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="add up these runners' results instead of running")
    args = parser.parse_args(argv)
    if args.merge:
        return _merge(args.merge, args.save)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job: children inherit it
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    load = []
    try:
        for index in range(args.repeats):
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   *TESTS], cwd=ROOT, env=env, capture_output=True, text=True)
            tail = done.stdout.strip().splitlines()[-1:] or [""]
            runs.append({"run": index, "exit": done.returncode,
                         "seconds": round(time.monotonic() - start, 1), "summary": tail[0]})
            load.append(os.getloadavg()[0])
            print(runs[-1], flush=True)
            if done.returncode != 0:
                print(done.stdout[-4000:], done.stderr[-2000:], flush=True)
            _save(runs, load, args.busy, args.save)
    finally:
        for process in busy:
            process.terminate()
    passes = sum(run["exit"] == 0 for run in runs)
    report(_summary(runs, load, args.busy), args.save)
    return 0 if passes == args.repeats else 1


def _summary(runs: list[dict], load: list[float], busy: int) -> dict:
    return {"benchmark": "stress_stops", "tests": TESTS, "repeats": len(runs),
            "passes": sum(run["exit"] == 0 for run in runs), "busy_loops": busy,
            "sigint_ignored_in_parent": True, "cpu": cpu_model(), "cpus": os.cpu_count(),
            "load_1min_min_max": [round(min(load), 2), round(max(load), 2)] if load else None,
            "note": "the machine was shared with 7 other helpers' work besides the busy loops",
            "runs": runs}


def _save(runs: list[dict], load: list[float], busy: int, save: Path | None) -> None:
    if save is not None:
        save.write_text(json.dumps(_summary(runs, load, busy), indent=2) + "\n")


def _merge(paths: list[Path], save: Path | None) -> int:
    parts = [json.loads(path.read_text()) for path in paths]
    runs = [dict(run, runner=i) for i, part in enumerate(parts) for run in part["runs"]]
    loads = [x for part in parts for x in part["load_1min_min_max"] or []]
    merged = _summary(runs, loads, max(part["busy_loops"] for part in parts))
    merged["runners"] = len(parts)
    report(merged, save)
    return 0 if merged["passes"] == merged["repeats"] else 1


if __name__ == "__main__":
    sys.exit(main())
