"""Rewards: the format reward's cases, and code rewards from a real sandbox that reward hacks cannot fool."""
import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.rl import RewardConfig, format_reward, score_completions
from diffucoder.sandbox import Sandbox, SandboxConfig, TestCase

ADD = "def add(a, b):\n    return a + b\n"
ASSERTS = "assert add(1, 2) == 3\nassert add(-4, 4) == 0\nassert add(10, 5) == 15\n"
CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-4, 4) == 0\n" \
        "    assert candidate(10, 5) == 15\n"
CASES = [TestCase(args=(1, 2), expected=3), TestCase(args=(-4, 4), expected=0), TestCase(args=(10, 5), expected=15)]


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is the function:\n```{tag}\n{code}```\nIt adds the numbers.<|im_end|>"


@pytest.mark.parametrize("text,expected", [
    (fenced(ADD), 1.0),
    (fenced(ADD, tag="py"), 1.0),
    (fenced(ADD, tag="python3"), 1.0),
    (fenced(ADD, tag=""), 1.0),                                        # an untagged block is python here
    (f"```python\n{ADD}```", 1.0),                                     # nothing around the block
    (fenced("def add(a, b)\n    return a + b\n"), 0.5),               # one block that does not parse
    (fenced("   \n"), 0.5),                                           # one block with no code
    (ADD, 0.0),                                                       # no block
    (f"```python\n{ADD}", 0.0),                                       # unclosed block
    (fenced(ADD) + "\n```python\nadd(1, 2)\n```", 1.0),               # a second block after <|im_end|>: cut
    (fenced(ADD).replace("<|im_end|>", "") + "\n```python\nprint(add(1, 2))\n```", 0.0),   # two blocks
    (f"```python\n{ADD}```\n```\nx = (\n```", 0.0),                   # two blocks, one broken
    (fenced("echo hi\n", tag="bash"), 0.0),                           # another language
    (fenced(ADD, tag="Python"), 0.0),                                 # tags are lower case
    ("Use ``` fences like ```python\nx = 1\n```", 0.0),               # stray fences
])
def test_format_reward(text, expected):
    assert format_reward(text) == expected


class NoRunsSandbox:
    """Stands in for a sandbox when nothing may run: any call is a test failure."""

    def run_many(self, items):
        raise AssertionError(f"the sandbox was asked to run {len(items)} programs")


def test_badly_formatted_answers_get_no_code_reward_and_never_run():
    texts = [ADD, fenced("def add(a, b) return a + b\n"), fenced(ADD).replace("<|im_end|>", "") * 2]
    rewards = score_completions(NoRunsSandbox(), texts, [ASSERTS] * 3, [None] * 3, RewardConfig())
    assert [(r.format, r.code, r.tests_total, r.verdict) for r in rewards] == [
        (0.0, 0.0, 0, "not_run"), (0.5, 0.0, 0, "not_run"), (0.0, 0.0, 0, "not_run")]
    assert [r.total for r in rewards] == [0.0, 0.25, 0.0]


def test_mismatched_lengths_and_bad_tests_are_named():
    with pytest.raises(DiffucoderError, match="one test set and entry point per completion"):
        score_completions(NoRunsSandbox(), [fenced(ADD)] * 2, [ASSERTS], [None], RewardConfig())
    with pytest.raises(DiffucoderError, match="tests of completion 0 cannot run"):
        score_completions(NoRunsSandbox(), [fenced(ADD)], ["x = 1\n"], [None], RewardConfig())


HACKS = {
    "sys.exit at import": "import sys\nsys.exit(0)\n",
    "os._exit at import": "import os\nos._exit(0)\n",
    "sys.exit in the function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit in the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "os._exit on the second call": "import os\ncalls = []\ndef add(a, b):\n    calls.append(1)\n"
                                       "    if len(calls) > 1:\n        os._exit(0)\n    return 0\n",
    "always-equal object": "class Yes:\n    def __eq__(self, other):\n        return True\n"
                           "    def __ne__(self, other):\n        return False\n    __hash__ = object.__hash__\n"
                           "def add(a, b):\n    return Yes()\n",
    "int subclass equal to all": "class Int(int):\n    def __eq__(self, other):\n        return True\n"
                                 "    __hash__ = int.__hash__\ndef add(a, b):\n    return Int(-1)\n",
    "fake output then exit": "print('PASS')\nprint('OK')\nprint('3 passed, 0 failed')\nimport os\nos._exit(0)\n",
    "fake output in the function": "def add(a, b):\n    print('PASS')\n    print('OK')\n    return None\n",
    "patched builtins": "import builtins\nclass Never(Exception):\n    pass\nbuiltins.AssertionError = Never\n"
                        "builtins.print = lambda *args, **kwargs: None\nbuiltins.isinstance = lambda *a: True\n"
                        "def add(a, b):\n    return -1\n",
    "patched assert helpers": "import unittest, sys\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
                              "sys.excepthook = lambda *a: None\ndef add(a, b):\n    return -1\n",
}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(timeout_s=5, memory_mb=512, workers=2)) as sb:
        yield sb


@pytest.mark.integration
@pytest.mark.parametrize("style", ["asserts", "check", "cases"])
def test_reward_hacks_get_zero_code_reward_and_a_correct_answer_gets_one(sandbox, style):
    tests, entry = {"asserts": (ASSERTS, None), "check": (CHECK, "add"), "cases": (CASES, "add")}[style]
    programs = [ADD, *HACKS.values()]
    rewards = score_completions(sandbox, [fenced(p) for p in programs], [tests] * len(programs),
                                [entry] * len(programs), RewardConfig())
    correct, *hacked = rewards
    assert (correct.format, correct.code, correct.total, correct.verdict) == (1.0, 1.0, 2.5, "pass")
    assert (correct.tests_passed, correct.tests_total) == (3, 3)
    for name, reward in zip(HACKS, hacked):
        assert reward.format == 1.0, name
        assert (reward.code, reward.tests_passed, reward.total) == (0.0, 0, 0.5), (name, reward)
        assert reward.verdict != "pass", name


@pytest.mark.integration
def test_code_reward_is_the_fraction_of_the_tasks_tests_passed(sandbox):
    wrong_on_last = "def add(a, b):\n    return a + b if a != 10 else 0\n"
    right_on_first = "def add(a, b):\n    return 3\n"
    texts = [fenced(wrong_on_last), fenced(right_on_first), fenced(right_on_first), fenced(wrong_on_last)]
    rewards = score_completions(sandbox, texts, [ASSERTS, ASSERTS, CHECK, [a for a in ASSERTS.splitlines()]],
                                [None, None, "add", None], RewardConfig(format_weight=1.0, code_weight=3.0))
    assert [(r.tests_passed, r.tests_total) for r in rewards] == [(2, 3), (1, 3), (1, 3), (2, 3)]
    assert [r.code for r in rewards] == pytest.approx([2 / 3, 1 / 3, 1 / 3, 2 / 3])
    # check(): the run stops at the first failing assert; the asserts it never reached still count
    assert rewards[2].verdict == "fail"
    assert [r.total for r in rewards] == pytest.approx([1 + 2.0, 1 + 1.0, 1 + 1.0, 1 + 2.0])


def released(code: str, before: str = "Here is the function:\n", after: str = "\n") -> str:
    """A completion as the released trainer decodes it (special tokens skipped): no <|im_end|>."""
    return f"{before}```python\n{code}```{after}"


@pytest.mark.parametrize("text,expected", [
    (released(ADD), 1.0),
    (released(ADD, before=""), 1.0),                                   # no text before the block
    (released("def add(a, b)\n    return a + b\n"), 0.5),              # does not parse
    (released(""), 1.0),                                               # an empty block parses
    (released("   \n"), 1.0),                                          # the stripped code is empty: parses
    (released(ADD, after=""), 0.0),                                    # no newline after the closing fence
    (released(ADD, after="\n\n"), 0.0),                                # a second newline
    (released(ADD, after="\nIt adds.\n"), 0.0),                        # text after the block
    (released(ADD).replace("```python", "```py"), 0.0),                # the tag is exactly python
    (released(ADD).replace("```python", "```"), 0.0),                  # an untagged fence
    (released(ADD).replace("```python\n", "```python "), 0.0),         # the tag ends its line
    (f"```python\n{ADD}```\n```python\nadd(1, 2)\n```\n", 0.0),        # a second block: ``` inside the code
    (released(ADD) + "<|im_end|>", 0.0),                               # the end marker left in as text
])
def test_official_format_reward(text, expected):
    assert format_reward(text, rule="official") == expected


def test_the_two_rules_disagree_where_the_release_is_strict():
    answer = fenced(ADD)                                               # text after the block, then <|im_end|>
    assert (format_reward(answer, "lenient"), format_reward(answer, "official")) == (1.0, 0.0)
    empty = released("")
    assert (format_reward(empty, "lenient"), format_reward(empty, "official")) == (0.5, 1.0)
    with pytest.raises(DiffucoderError, match="format rule"):
        format_reward(answer, rule="strict")


SLOW_ON_TEN = "import time\ndef add(a, b):\n    if a == 10:\n        time.sleep(30)\n    return a + b\n"


@pytest.mark.integration
def test_each_test_runs_alone_and_a_timeout_fails_the_completion(sandbox):
    each = RewardConfig(test_runs="each", test_timeout_s=1.0)
    wrong_on_last = "def add(a, b):\n    return a + b if a != 10 else 0\n"
    texts = [fenced(ADD), fenced(wrong_on_last), fenced(SLOW_ON_TEN), fenced(HACKS["os._exit in the function"])]
    lines = [line for line in ASSERTS.splitlines()]
    rewards = score_completions(sandbox, texts, [lines] * 4, [None] * 4, each)
    assert [(r.tests_passed, r.tests_total) for r in rewards[:2]] == [(3, 3), (2, 3)]
    assert rewards[1].verdict == "fail"
    # two of its tests pass, but one ran past its own limit: the released semantics give it 0
    assert (rewards[2].code, rewards[2].tests_passed, rewards[2].verdict) == (0.0, 0, "timeout")
    assert (rewards[3].code, rewards[3].verdict != "pass") == (0.0, True)   # exit code 0 is no pass
    together = score_completions(sandbox, texts[:2], [ASSERTS] * 2, [None] * 2, RewardConfig())
    assert [r.code for r in together] == [r.code for r in rewards[:2]]


def test_split_tests_keeps_setup_lines_in_every_test():
    from diffucoder.rl.rewards import split_tests
    source = "import math\nassert add(1, 2) == 3\nX = 4\nassert add(X, 1) == 5\n"
    assert split_tests(source) == ["import math\nX = 4\nassert add(1, 2) == 3\n",
                                   "import math\nX = 4\nassert add(X, 1) == 5\n"]
    assert split_tests(CHECK) == [CHECK] and split_tests(CASES) == [[case] for case in CASES]
