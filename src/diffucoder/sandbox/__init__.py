"""Run untrusted Python programs against tests, isolated; verdicts decided by the parent.

    from diffucoder.sandbox import Sandbox, SandboxConfig, TestCase, Verdict

    with Sandbox(SandboxConfig(timeout_s=5, memory_mb=512)) as sb:
        r = sb.run("def add(a, b):\\n    return a + b\\n", "assert add(1, 2) == 3")
        r.verdict is Verdict.PASS, r.passed_fraction, r.isolation      # "bwrap" here
        r = sb.run(program, problem["test"], entry_point="add")         # HumanEval check()
        r = sb.run(program, [TestCase(args=(1, 2), expected=3)], entry_point="add")
        results = sb.run_many([(program, tests, "add"), ...])          # concurrent, in order
        [(t.name, t.verdict, t.message) for t in r.tests]

    diffucoder sandbox check --solution sol.py --tests tests.py [--entry-point add]
    diffucoder sandbox doctor
    diffucoder sandbox serve --port 8080 --workers 2      # the pool as an HTTP service
    diffucoder sandbox selfcheck --endpoint http://diffucoder-sandbox:8080

A stage (evaluate, the RL rewards) opens its sandbox with the recipe's ``sandbox`` section:

    with open_sandbox(cfg, SandboxSection(endpoint="http://diffucoder-sandbox:8080",
                                          min_isolation="service")) as sb:   # SandboxClient
        self_check(sb)            # a correct program passes, cheating ones do not, or SandboxError
        sb.run_many(items)        # batched into few HTTP requests; the same RunResults

``endpoint`` set: the sandbox service (``service``: the pool behind HTTP in a pod of its own,
``client``: the same interface over HTTP). Else a local pool, refused below ``min_isolation``
(layers ``LAYERS``, weakest first: none < rlimits-only < unshare-n+uid < bwrap-userns < bwrap <
service; ``auto`` = the strongest here and at least one that cuts the network), with an error
that says what is missing and how to fix it (``isolation.check_floor``).

How a run works. Each pool worker is a zygote (``inside.zygote``) started inside the
strongest isolation layer available (bubblewrap, else ``unshare``, else rlimits only; see
``isolation``) with the common modules imported once. It keeps one *test runner* process
and one idle, pre-forked *candidate* process. A job hands the candidate its program and
the runner the tests plus a socket to the candidate; the runner calls the program's
functions over it, arguments and results crossing as plain data only (``inside.wire``).
The candidate has rlimits (CPU, address space, processes, file size, open files), a
scrubbed environment and a private working directory; at the wall-clock deadline, or when
the tests end, every process of the job is killed, ``setsid`` daemons included, in every
layer: the PID namespace's (bwrap, unshare), the job uid's (root without a PID namespace), or,
with neither, the zygote's subtree (it is a child subreaper: every orphan comes back to it).

What is guaranteed when started as root (the runner and each worker's candidates then run
under dedicated unprivileged uids):
- The program never shares a process, uid or address space with the tests, the values
  they expect or the channel results are reported on; it cannot signal, ptrace or read
  the memory of the runner or the zygote; and the zygote wipes each job's program, tests
  and results from its memory before forking the next candidate. So exiting early
  (``sys.exit``, ``os._exit(0)``), printing fake markers, patching ``assert``, ``print`` or
  builtins, killing its parent, or returning an object whose ``__eq__`` always holds can
  never produce a pass: results are exact built-in types, and a test passes only if the
  runner completed it and this (trusted) process re-checked every compared value with
  type-exact equality (``wire.strict_equal``: int and float compare by value, a bool is not
  an int, a list is not a tuple). Exit codes and printed text are never evidence of a pass.
- Call tests (``TestCase(args, expected)``): the expected value never leaves this process.
- ``assert`` tests and ``check(candidate)`` functions are trusted code run by the runner;
  each ``assert a == b`` reports both values for re-checking here; asserts of other forms
  (``assert abs(f(x) - y) < 1e-6``) report the truth value the runner computed from plain
  data. Every assert executed must hold (one the test catches itself still fails).
- Without root (``bwrap-userns``, ``rlimits-only``) runner and program share one uid: the
  program cannot read the runner's memory (both are non-dumpable) but can kill it, which
  is a crash, never a pass. ``rlimits-only`` isolates neither the network (``strict=True``
  refuses it) nor the filesystem, and without root the program may signal your processes
  (in the sandbox service's pod: the service's own, whose pod is then the boundary).

Limits of the model: functions take and return plain data (objects, generators and
in-place changes to arguments do not cross); set members and dict keys compare by Python
hashing (``{1} == {True}``).
"""
from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import LAYERS, SandboxConfig, SandboxSection, layer_rank
from diffucoder.sandbox.connect import check_sandbox, open_sandbox
from diffucoder.sandbox.isolation import probe_layers
from diffucoder.sandbox.pool import Sandbox
from diffucoder.sandbox.results import RunResult, SandboxError, TestCase, TestOutcome, Verdict
from diffucoder.sandbox.selfcheck import self_check

__all__ = ["LAYERS", "RunResult", "Sandbox", "SandboxClient", "SandboxConfig", "SandboxError",
           "SandboxSection", "TestCase", "TestOutcome", "Verdict", "check_sandbox", "layer_rank",
           "open_sandbox", "probe_layers", "self_check"]
