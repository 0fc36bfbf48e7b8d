"""``diffucoder sandbox ...``: check one solution by hand, see what isolation exists, serve the pool.

    diffucoder sandbox check --solution sol.py --tests tests.py [--timeout 5]
    diffucoder sandbox check --solution sol.py --tests humaneval_test.py --entry-point add
    diffucoder sandbox check --solution sol.py --tests tests.py --endpoint http://127.0.0.1:8080
    diffucoder sandbox doctor
    diffucoder sandbox serve --port 8080 --workers 2 --timeout 60 [--min-isolation rlimits-only]
    diffucoder sandbox selfcheck [--endpoint http://diffucoder-sandbox:8080]

``check`` prints the verdicts as JSON and exits 0 only when every test passed (1
otherwise). The tests file holds assert statements, or a HumanEval-style
``check(candidate)`` function together with ``--entry-point``; with ``--endpoint`` the
sandbox service runs it.
``doctor`` prints each isolation layer, whether it works here, and the one ``auto`` picks;
it exits 1 when no layer isolates the network.
``serve`` runs the sandbox service (``diffucoder.sandbox.service``) until SIGTERM; it refuses
to start below ``--min-isolation`` (default: the strongest layer available, at least one that
cuts the network) and exits 1 if its self-check fails.
``selfcheck`` runs a correct program and cheating ones (here, or in the service) and exits 0
only if each got the verdict it must get: the chart's ``helm test``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffucoder.errors import DiffucoderError
from diffucoder.sandbox import Sandbox, SandboxClient, SandboxConfig, self_check
from diffucoder.sandbox.config import ISOLATION_CHOICES, MIN_ISOLATION_CHOICES
from diffucoder.sandbox.isolation import choose_launch, probe_layers, sandbox_python
from diffucoder.sandbox.selfcheck import BOUNDARY, CASES
from diffucoder.sandbox.service import ServiceConfig, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    check = sub.add_parser("check", help="run a solution against tests; print verdicts (JSON)")
    check.add_argument("--solution", required=True, metavar="FILE", help="the program to test")
    check.add_argument("--tests", required=True, metavar="FILE",
                       help="assert statements, or a check(candidate) function")
    check.add_argument("--entry-point", metavar="NAME",
                       help="function passed to check(); needed for check()-style tests")
    check.add_argument("--timeout", type=float, default=10.0, metavar="S",
                       help="wall-clock limit for the program and all tests (default 10)")
    check.add_argument("--memory-mb", type=int, default=1024, metavar="MB",
                       help="address-space limit (default 1024)")
    check.add_argument("--isolation", default="auto", choices=ISOLATION_CHOICES,
                       help="isolation layer (default: strongest available)")
    check.add_argument("--strict", action="store_true",
                       help="refuse to run without network isolation")
    check.add_argument("--endpoint", metavar="URL", help="run it in this sandbox service instead")
    sub.add_parser("doctor", help="show which isolation layers work on this machine")
    serve_cmd = sub.add_parser("serve", help="serve the worker pool over HTTP (the sandbox service)")
    serve_cmd.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve_cmd.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve_cmd.add_argument("--workers", type=int, default=None,
                           help="programs run at once (default: number of CPU cores)")
    serve_cmd.add_argument("--queue", type=int, default=256,
                           help="programs admitted at once; more get 429 (default 256)")
    serve_cmd.add_argument("--max-batch", type=int, default=0, help="programs per request (default: queue)")
    serve_cmd.add_argument("--timeout", type=float, default=60.0, metavar="S",
                           help="cap (and default) of a program's wall-clock limit (default 60)")
    serve_cmd.add_argument("--memory-mb", type=int, default=1024, metavar="MB",
                           help="cap (and default) of a program's address space (default 1024)")
    serve_cmd.add_argument("--isolation", default="auto", choices=ISOLATION_CHOICES,
                           help="isolation layer of the jobs (default: strongest available)")
    serve_cmd.add_argument("--min-isolation", default="auto", choices=MIN_ISOLATION_CHOICES,
                           help="refuse to start below this layer (default auto: the strongest "
                                "available, at least unshare-n+uid)")
    serve_cmd.add_argument("--max-body-mb", type=int, default=64, help="largest request body (default 64)")
    serve_cmd.add_argument("--max-source-kb", type=int, default=1024,
                           help="largest program or tests source (default 1024)")
    serve_cmd.add_argument("--max-connections", type=int, default=64, help="connections at once (default 64)")
    serve_cmd.add_argument("--drain-s", type=float, default=120.0,
                           help="on SIGTERM, wait this long for admitted programs (default 120)")
    selfcheck = sub.add_parser("selfcheck", help="a correct and cheating programs get the right verdicts?")
    selfcheck.add_argument("--endpoint", metavar="URL", help="check this sandbox service (default: here)")
    selfcheck.add_argument("--retry-s", type=float, default=60.0,
                           help="with --endpoint: wait this long for the service (default 60)")
    selfcheck.add_argument("--boundary", action="store_true",
                           help="also a program that must find no credential and reach no network")


def _read(path: str, what: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise DiffucoderError(f"{what} file not found: {path}")
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DiffucoderError(f"cannot read {what} file {path}: {err}") from None


def _check(args: argparse.Namespace) -> int:
    program, tests = _read(args.solution, "solution"), _read(args.tests, "tests")
    cfg = SandboxConfig(timeout_s=args.timeout, memory_mb=args.memory_mb, workers=1,
                        isolation=args.isolation, strict=args.strict)
    with (SandboxClient(args.endpoint, cfg, retry_s=10) if args.endpoint else Sandbox(cfg)) as sandbox:
        result = sandbox.run(program, tests, entry_point=args.entry_point)
    json.dump(result.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if result.passed else 1


def _doctor() -> int:
    layers = probe_layers()
    for layer in layers:
        mark = "yes" if layer.available else "no "
        net = "network isolated" if layer.network_isolated else "network reachable"
        print(f"{layer.name:14s} {mark}  {net:18s} {layer.detail}")
    chosen = choose_launch(SandboxConfig())
    print(f"python inside: {sandbox_python()}")
    print(f"auto picks: {chosen.name}")
    return 0 if any(l.available and l.network_isolated for l in layers) else 1


def _serve(args: argparse.Namespace) -> int:
    sandbox_cfg = SandboxConfig(timeout_s=args.timeout, memory_mb=args.memory_mb, workers=args.workers,
                                isolation=args.isolation)
    service_cfg = ServiceConfig(host=args.host, port=args.port, queue=args.queue, max_batch=args.max_batch,
                                max_body_mb=args.max_body_mb, max_source_kb=args.max_source_kb,
                                max_connections=args.max_connections, min_isolation=args.min_isolation,
                                drain_s=args.drain_s)
    return serve(sandbox_cfg, service_cfg)


def _selfcheck(args: argparse.Namespace) -> int:
    cfg = SandboxConfig(timeout_s=30, workers=2)
    with (SandboxClient(args.endpoint, cfg, retry_s=args.retry_s) if args.endpoint else Sandbox(cfg)) as sandbox:
        self_check(sandbox, boundary=args.boundary)
        where = sandbox.describe()
    checked = [what for what, *_ in CASES + (BOUNDARY if args.boundary else ())]
    print(json.dumps({**where, "checked": checked, "ok": True}, indent=2))
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    if args.action == "serve":
        return _serve(args)
    if args.action == "selfcheck":
        return _selfcheck(args)
    return _doctor()
