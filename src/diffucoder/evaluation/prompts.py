"""Prompts for base and instruct models, and the program each completion is scored as.

    build_prompt(problem, "base")        # the code prompt itself (signature + docstring)
    build_prompt(problem, "instruct")    # the SFT chat template around problem.instruction
    build_prompt(problem, "instruct", "released")   # the released Instruct models' prompt (system turn)
    answer = extract_answer(problem, completion, "instruct")
    answer.program, answer.extraction    # the code to run; "fenced" | "unclosed_fence" | "raw"
    answer = extract_answer(problem, completion, "base", stop_sequences=["\\ndef "])
    answer.extraction                    # "completion": prompt + completion cut at a stop

Instruct answers: the text up to ``<|im_end|>``, then the first fenced python block
(an answer cut off before its closing fence keeps what follows the opening one; with no
fence the whole text is taken as code), after the prompt's import lines. Base
completions: cut at the first stop sequence, as HumanEval does, and appended to the prompt;
when the prompt does not define the entry point (MBPP's docstring prompts) the completion
writes it, so helpers before ``def <entry_point>(`` are kept and the cut starts there.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from diffucoder.errors import DiffucoderError
from diffucoder.evaluation.config import DEFAULT_STOP_SEQUENCES, PROMPT_STYLES
from diffucoder.evaluation.problems import Problem, prompt_imports
from diffucoder.tasks import extract_python_block
from diffucoder.training.chat import IM_END, render_prompt

OPEN_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n")


@dataclass(frozen=True)
class Answer:
    program: str        # what the sandbox runs
    code: str           # the part the model wrote
    extraction: str     # how the code was found


def _check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise DiffucoderError(f"prompt style must be one of {list(PROMPT_STYLES)}, got {style!r}")


def build_prompt(problem: Problem, style: str, template: str = "project") -> str:
    """The code prompt (``base``), or the instruction in the chat ``template`` (``instruct``:
    ``training.chat``, ``project`` or ``released``)."""
    _check_style(style)
    if style == "base":
        return problem.prompt
    return render_prompt([{"role": "user", "content": problem.instruction}], where=problem.task_id,
                         template=template)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` before the first stop sequence; a stop matching at the very start (before any
    code, e.g. a completion opening with a blank line and ``def``) does not count."""
    start = len(text) - len(text.lstrip())
    ends = [index for stop in stops if (index := text.find(stop, start)) >= 0]
    return text[:min(ends)] if ends else text


def extract_code(text: str) -> tuple[str, str]:
    """(code, how) from an instruct answer."""
    text = text.split(IM_END, 1)[0]
    block = extract_python_block(text)
    if block is not None:
        return block, "fenced"
    opening = OPEN_FENCE.search(text)
    if opening:
        return text[opening.end():], "unclosed_fence"
    return text, "raw"


def extract_answer(problem: Problem, completion: str, style: str,
                   stop_sequences: Sequence[str] = tuple(DEFAULT_STOP_SEQUENCES)) -> Answer:
    _check_style(style)
    if style == "base":
        start = 0
        if f"def {problem.entry_point}(" not in problem.prompt:
            start = max(0, completion.find(f"def {problem.entry_point}("))
        code = completion[:start] + cut_at_stops(completion[start:], stop_sequences)
        return Answer(problem.prompt + code, code, "completion")
    code, how = extract_code(completion)
    return Answer(prompt_imports(problem.prompt) + code, code, how)
