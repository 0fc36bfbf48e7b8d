"""The chat template of SFT (and of whoever prompts an SFT model: evaluation, RL, serving).

    from diffucoder.training.chat import ChatConfig, render_prompt, render_response, split_chat
    prompt = render_prompt([{"role": "user", "content": "Write f."}])
    # '<|im_start|>user\\nWrite f.<|im_end|>\\n<|im_start|>assistant\\n'
    prompt = render_prompt([{"role": "user", "content": "Write f."}], template="released")
    # '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n'
    # '<|im_start|>user\\nWrite f.\\n<|im_end|>\\n<|im_start|>assistant\\n'
    response = render_response("```python\\ndef f(): ...\\n```")   # content + '<|im_end|>'
    prompt, response = split_chat(record)   # a {"messages": [...]} record, last turn = assistant

Two templates (``chat.template`` in the evaluation and serving recipes, the ``template``
argument here):

- ``project``: ChatML turns (``<|im_start|>role\\n...<|im_end|>\\n``), as Qwen2.5 writes them,
  and only the turns given. What this project's SFT has always trained on (tiny-cpu).
- ``released``: the prompt the released DiffuCoder Instruct / cpGRPO models are shown in their
  model cards and in ``inference_demo.py`` of apple/ml-diffucoder: a system turn "You are a
  helpful assistant." when the messages bring none, and each user turn's text stripped and
  followed by a newline before ``<|im_end|>``. The 7b-gpu default, for SFT, evaluation and
  serving of released models.

Either way the answer is ``content<|im_end|>`` (the released models end their answers the same
way). The markers are plain text here: a tokenizer trained by the curation does not know them as
special tokens, so each marker is a few ordinary tokens; a Qwen2.5 tokenizer encodes them as its
single special tokens. After the response the trainer appends ``<|endoftext|>`` and
``<|dlm_pad|>`` up to the fixed length, so a model learns where its answer ends; decode up to the
first ``<|im_end|>``, ``<|endoftext|>`` or ``<|dlm_pad|>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffucoder.config import setting
from diffucoder.errors import DiffucoderError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATES = ("project", "released")
RELEASED_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass
class ChatConfig:
    template: str = setting("project", choices=CHAT_TEMPLATES,
                            help="project: ChatML turns as given; released: the released Instruct models' "
                                 "prompt (a 'You are a helpful assistant.' system turn when none is given, "
                                 "user text stripped and followed by a newline before <|im_end|>)")


def _check(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DiffucoderError(f"{where}: 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise DiffucoderError(f"{where}: message {i} must be {{'role': one of {list(ROLES)}, "
                                  f"'content': str}}, got {message!r}"[:300])
    return messages


def _check_template(template: str) -> None:
    if template not in CHAT_TEMPLATES:
        raise DiffucoderError(f"'chat.template': must be one of {list(CHAT_TEMPLATES)}, got {template!r}")


def _turn(role: str, content: str, template: str) -> str:
    if template == "released" and role == "user":
        content = content.strip() + "\n"
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def render_prompt(messages: list[dict[str, str]], where: str = "chat", template: str = "project") -> str:
    """Every turn of ``messages`` (none may be the answer), then the assistant header."""
    _check(messages, where)
    _check_template(template)
    if template == "released" and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": RELEASED_SYSTEM_PROMPT}, *messages]
    return "".join(_turn(m["role"], m["content"], template) for m in messages) + f"{IM_START}assistant\n"


def render_response(content: str) -> str:
    return f"{content}{IM_END}"


def split_chat(record: dict[str, Any], where: str = "chat", template: str = "project") -> tuple[str, str]:
    """(prompt text, response text) of a record whose last message is the assistant's answer."""
    messages = _check(record.get("messages") if isinstance(record, dict) else None, where)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise DiffucoderError(f"{where}: the last message must be the assistant's answer after "
                              "at least one user turn")
    return render_prompt(messages[:-1], where, template), render_response(messages[-1]["content"])
