"""What a sandbox run returns: an overall verdict, one outcome per test, and how it ran.

    result = sandbox.run(program, tests, entry_point="add")
    result.verdict is Verdict.PASS, result.passed_fraction, result.isolation
    [(t.name, t.verdict.value, t.message) for t in result.tests]
    json.dumps(result.to_dict())
    RunResult.from_dict(json.loads(text)).to_dict() == result.to_dict()    # what the service sends
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from diffucoder.errors import DiffucoderError


class Verdict(str, enum.Enum):
    PASS = "pass"        # every test ran and the trusted side saw every assertion hold
    FAIL = "fail"        # a test ran and an assertion did not hold (wrong answer)
    ERROR = "error"      # the program or a test raised, the program exited early, bad data
    TIMEOUT = "timeout"  # wall-clock or CPU limit exceeded
    MEMORY = "memory"    # the address-space limit was hit (MemoryError)
    CRASHED = "crashed"  # the program died by a signal, or the sandbox worker died


class SandboxError(DiffucoderError):
    """Cannot run: bad tests or program input, or the required isolation is missing."""


@dataclass(frozen=True)
class TestCase:
    """One test. Either a call — ``entry_point(*args, **kwargs)`` must return ``expected``
    (plain data, compared by the trusted parent with exact types) — or ``code``: statements
    with ``assert``s, run by the test runner against the program's functions."""
    args: tuple = ()
    expected: Any = None
    kwargs: dict = field(default_factory=dict)
    code: str | None = None
    name: str = ""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestOutcome:
    name: str
    verdict: Verdict
    message: str = ""

    __test__ = False


@dataclass
class RunResult:
    verdict: Verdict
    tests: list[TestOutcome]
    isolation: str
    duration_s: float
    message: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def passed_fraction(self) -> float:
        if not self.tests:
            return 0.0
        return sum(t.verdict is Verdict.PASS for t in self.tests) / len(self.tests)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict.value, "passed_fraction": self.passed_fraction,
                "isolation": self.isolation, "duration_s": round(self.duration_s, 4),
                "message": self.message,
                "tests": [{"name": t.name, "verdict": t.verdict.value, "message": t.message}
                          for t in self.tests],
                "stdout": self.stdout, "stderr": self.stderr}

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        """The result ``to_dict`` describes (``passed_fraction`` follows from the tests).
        Raises ValueError / KeyError / TypeError on anything else."""
        def text(value, what: str) -> str:
            if type(value) is not str:
                raise TypeError(f"{what}: expected a string, got {type(value).__name__}")
            return value
        tests = data["tests"]
        if type(tests) is not list:
            raise TypeError("tests: expected a list")
        outcomes = [TestOutcome(text(t["name"], "tests.name"), Verdict(t["verdict"]),
                                text(t["message"], "tests.message")) for t in tests]
        duration = data["duration_s"]
        if type(duration) not in (int, float):
            raise TypeError("duration_s: expected a number")
        return cls(Verdict(data["verdict"]), outcomes, text(data["isolation"], "isolation"),
                   float(duration), text(data["message"], "message"),
                   text(data["stdout"], "stdout"), text(data["stderr"], "stderr"))
