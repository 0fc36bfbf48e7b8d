"""A known-good program must pass and known-bad ones must not, before a run trusts the sandbox.

    with open_sandbox(cfg, section) as sandbox:
        self_check(sandbox)      # SandboxError if the sandbox passes cheaters or fails honest code
    self_check(client, boundary=True)   # + no credential found, no network reached (helm test)

A sandbox that cannot start its workers, or one that is broken (every verdict an error, or
a pass for anything), would otherwise turn into a run of zero (or perfect) rewards. The
check costs four small programs in one ``run_many`` (one request to a sandbox service).
"""
from __future__ import annotations

from diffucoder.sandbox.results import SandboxError, TestCase, Verdict

GOOD = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
# (what it is, program, tests, entry point, the verdicts it may get)
CASES = (
    ("a correct program", GOOD, TESTS, None, {Verdict.PASS}),
    ("a correct program against call tests", GOOD,
     [TestCase(args=(2, 3), expected=5), TestCase(args=((1,), (2,)), expected=(1, 2))], "add", {Verdict.PASS}),
    ("a wrong program", "def add(a, b):\n    return a - b\n", TESTS, None, {Verdict.FAIL}),
    ("a program that exits with status 0 before the tests", "import os\nos._exit(0)\n" + GOOD, TESTS, None,
     {Verdict.ERROR}),
    ("a program returning an always-equal object",
     "class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n",
     TESTS, None, {Verdict.ERROR}),
)


# What a program in a sandbox pod must not find or reach (``diffucoder sandbox selfcheck --boundary``,
# the chart's helm test): credentials in its environment or files, the cluster's DNS server, the
# internet (by address: a name lookup would wait out the resolver's timeouts).
BOUNDARY_PROBE = """
import contextlib, os, socket
def probe():
    found = [k for k in os.environ if k.startswith(("AWS_", "DIFFUCODER_S3", "KUBERNETES_"))]
    for path in ("/var/run/secrets/kubernetes.io/serviceaccount/token", "/var/run/secrets/diffucoder/s3"):
        if os.path.exists(path):
            found.append(path)
    targets = [("1.1.1.1", 443)]
    with contextlib.suppress(OSError, IndexError), open("/etc/resolv.conf") as conf:
        targets += [(line.split()[1], 53) for line in conf if line.startswith("nameserver")][:1]
    for host, port in targets:
        with contextlib.suppress(OSError):   # unreachable is what a sandbox pod should see
            socket.create_connection((host, port), timeout=2).close()
            found.append(f"{host}:{port} reachable")
    return found
"""
BOUNDARY = (("a program looking for credentials and the network", BOUNDARY_PROBE, "assert probe() == []", None,
             {Verdict.PASS}),)


def self_check(sandbox, timeout_s: float = 30.0, boundary: bool = False) -> None:
    """Run the known programs in ``sandbox`` (a ``Sandbox`` or ``SandboxClient``); SandboxError
    names every one that got a verdict it must not get. ``boundary``: also the probe that must
    find no credential and reach no network (a pod's boundary, seen from inside)."""
    cases = CASES + (BOUNDARY if boundary else ())
    results = sandbox.run_many([(program, tests, entry) for _, program, tests, entry, _ in cases],
                               timeout_s=timeout_s)
    wrong = [f"{what}: got '{result.verdict.value}' ({result.message or 'no message'}), expected "
             f"{' or '.join(sorted(v.value for v in allowed))}"
             for (what, _, _, _, allowed), result in zip(cases, results) if result.verdict not in allowed]
    if wrong:
        raise SandboxError(f"the sandbox ({results[0].isolation}) failed its self-check, refusing to trust it: "
                           + "; ".join(wrong) + ". See 'diffucoder sandbox doctor'.")
