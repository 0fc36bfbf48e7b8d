"""The synthetic suite: every family x parameter set, split into train / held-out, written as JSONL.

    from diffucoder.tasks import generate_suite, write_suite, read_tasks
    tasks = generate_suite(seed=0)                      # list[Task], deterministic
    paths = write_suite(tasks, "out/tasks")             # tasks-train.jsonl, tasks-heldout.jsonl,
                                                        # sft-train.jsonl, sft-heldout.jsonl
                                                        # (+ tasks-rl.jsonl with rl_fraction > 0)
    heldout = read_tasks("out/tasks/tasks-heldout.jsonl")   # list[dict], HumanEval fields
    assert not verify_references(tasks)                 # every reference passes its tests

The split is decided by a hash of (family, parameters) only, never by the seed, so
a held-out task's parameters never occur in training for any seed, and the
held-out set is the same for every run; the seed changes wording, names and test
inputs. With ``rl_fraction`` a further share of the training parameter sets becomes the
``rl`` split: prompts for reinforcement learning that SFT never sees, so the SFT model does
not already solve every one of them (a group whose rollouts all pass has no advantage to learn
from). Records follow HumanEval/EvalPlus (``task_id``, ``prompt``, ``entry_point``,
``canonical_solution``, ``test``) so the evaluation and RL stages read them as such.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from diffucoder.errors import DiffucoderError
from diffucoder.tasks.families_numeric import NUMERIC_FAMILIES, Family
from diffucoder.tasks.families_text import TEXT_FAMILIES
from diffucoder.tasks.spec import Task, make_task

FAMILIES: dict[str, Family] = {**NUMERIC_FAMILIES, **TEXT_FAMILIES}
SPLITS = ("train", "rl", "heldout")
FILES = {"tasks-train": "tasks-train.jsonl", "tasks-heldout": "tasks-heldout.jsonl",
         "sft-train": "sft-train.jsonl", "sft-heldout": "sft-heldout.jsonl", "tasks-rl": "tasks-rl.jsonl"}


def params_key(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2 ** 32


def split_of(family: str, params: dict[str, Any], heldout_fraction: float, rl_fraction: float = 0.0) -> str:
    """'heldout' for a fixed share of parameter sets, chosen by hash (seed-independent); of the
    others, 'rl' for a share ``rl_fraction`` (an independent hash), 'train' for the rest. The
    held-out sets do not depend on ``rl_fraction``."""
    key = f"{family}/{params_key(params)}"
    if _unit_hash(key) < heldout_fraction:
        return "heldout"
    return "rl" if _unit_hash(f"rl/{key}") < rl_fraction else "train"


def generate_suite(seed: int = 0, heldout_fraction: float = 0.2, max_per_family: int = 0,
                   families: Iterable[str] | None = None, wordings: int = 1, rl_fraction: float = 0.0) -> list[Task]:
    """All tasks (both splits), in a deterministic order.

    ``max_per_family``: keep at most this many tasks per family and split (0 = all),
    drawn with ``seed``, so large families do not drown small ones.
    ``wordings``: each training task also comes in ``wordings - 1`` more wordings (the wording
    seeds ``seed + 1``, ...: other names, phrasing and test inputs, the same parameters; task ids
    ``<id>@wording<k>``), so a small model must read the request rather than recall an answer.
    Held-out tasks keep one wording.
    ``rl_fraction``: the share of non-held-out parameter sets kept out of SFT for the RL stage
    (split ``rl``, in ``wordings`` wordings like training tasks; 0 = none).
    """
    if wordings < 1:
        raise DiffucoderError(f"'wordings': must be >= 1, got {wordings}")
    if not 0.0 < heldout_fraction < 1.0:
        raise DiffucoderError(f"'heldout_fraction': must be in (0, 1), got {heldout_fraction}")
    if not 0.0 <= rl_fraction < 1.0:
        raise DiffucoderError(f"'rl_fraction': must be in [0, 1), got {rl_fraction}")
    names = list(families) if families is not None else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise DiffucoderError(f"'families': unknown task families {unknown}; known: {sorted(FAMILIES)}")
    tasks = []
    for family in names:
        by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for params in FAMILIES[family].grid:
            by_split[split_of(family, params, heldout_fraction, rl_fraction)].append(params)
        for split in SPLITS:
            chosen = by_split[split]
            if max_per_family and len(chosen) > max_per_family:
                picker = random.Random(f"{seed}/{family}/{split}/choose")
                chosen = sorted(picker.sample(chosen, max_per_family), key=params_key)
            for params in chosen:
                key = params_key(params)
                for wording in range(1 if split == "heldout" else wordings):
                    rng = random.Random(f"{seed + wording}/{family}/{key}")
                    spec = FAMILIES[family].build(params, rng)
                    suffix = f"@wording{wording}" if wording else ""
                    tasks.append(make_task(spec, task_id=f"synth/{family}/{key}{suffix}", family=family,
                                           params=params, split=split))
    return tasks


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write records one JSON object per line, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def write_suite(tasks: list[Task], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the task and chat-SFT JSONL files of the train and held-out splits, and the task file
    of the ``rl`` split when it has tasks; their paths by kind."""
    out_dir = Path(out_dir)
    paths = {}
    rl_tasks = [t for t in tasks if t.split == "rl"]
    if rl_tasks:
        paths["tasks-rl"] = write_jsonl(out_dir / FILES["tasks-rl"], (t.record() for t in rl_tasks))
    for split in ("train", "heldout"):
        chosen = [t for t in tasks if t.split == split]
        paths[f"tasks-{split}"] = write_jsonl(out_dir / FILES[f"tasks-{split}"], (t.record() for t in chosen))
        paths[f"sft-{split}"] = write_jsonl(out_dir / FILES[f"sft-{split}"], (t.chat_record() for t in chosen))
    return paths


def read_tasks(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL file; a bad line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"{path}: no such task file")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DiffucoderError(f"{path}:{number}: not JSON: {err}") from None
    return records


_CHECKER = """
import json, sys
failures = []
for record in json.load(sys.stdin):
    scope = {}
    try:
        exec(record["prompt"] + record["canonical_solution"] + "\\n" + record["test"], scope)
        scope["check"](scope[record["entry_point"]])
    except BaseException as err:
        failures.append(f"{record['task_id']}: {type(err).__name__}: {err}")
print(json.dumps(failures))
"""


def verify_references(tasks: Iterable[Task | dict[str, Any]], timeout: float = 120.0) -> list[str]:
    """Run each (trusted) reference solution against its tests in a child Python.

    Returns one message per failing task (empty when all pass). For untrusted code use
    the project sandbox instead.
    """
    records = [t.record() if isinstance(t, Task) else t for t in tasks]
    proc = subprocess.run([sys.executable, "-I", "-c", _CHECKER], input=json.dumps(records),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise DiffucoderError(f"reference check crashed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)
