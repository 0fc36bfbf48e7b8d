"""The two chat templates (``chat.template``: project | released), with expected strings written by hand."""
import json

import pytest

from diffucoder.config import ConfigError, load_config
from diffucoder.errors import DiffucoderError
from diffucoder.training.chat import CHAT_TEMPLATES, ChatConfig, render_prompt, render_response, split_chat
from diffucoder.training.data_loader import ChatRows

USER = [{"role": "user", "content": "  Write a function add(a, b).\n"}]
RECORD = {"messages": [{"role": "user", "content": "Write f."}, {"role": "assistant", "content": "```python\nf\n```"}]}


def test_project_template_renders_the_turns_given():
    assert render_prompt(USER) == ("<|im_start|>user\n  Write a function add(a, b).\n<|im_end|>\n"
                                   "<|im_start|>assistant\n")
    assert render_prompt(USER, template="project") == render_prompt(USER)


def test_released_template_adds_the_system_turn_and_the_newline_before_im_end():
    # The prompt of the released Instruct models' cards and inference_demo.py (apple/ml-diffucoder):
    # system turn, the stripped query, a newline before <|im_end|>.
    assert render_prompt(USER, template="released") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWrite a function add(a, b).\n<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_released_template_keeps_a_given_system_turn_and_history():
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "f?"}]
    assert render_prompt(messages, template="released") == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi\n<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nf?\n<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt(messages) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nf?<|im_end|>\n<|im_start|>assistant\n")


def test_split_chat_per_template_and_the_same_answer():
    assert split_chat(RECORD) == ("<|im_start|>user\nWrite f.<|im_end|>\n<|im_start|>assistant\n",
                                  "```python\nf\n```<|im_end|>")
    assert split_chat(RECORD, template="released") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite f.\n<|im_end|>\n"
        "<|im_start|>assistant\n", "```python\nf\n```<|im_end|>")
    assert render_response("x") == "x<|im_end|>"


def test_unknown_template_names_the_key():
    with pytest.raises(DiffucoderError, match="'chat.template'"):
        render_prompt(USER, template="llama")
    assert CHAT_TEMPLATES == ("project", "released")
    assert load_config(ChatConfig, None, ["template=released"]).template == "released"
    with pytest.raises(ConfigError, match="template"):
        load_config(ChatConfig, None, ["template=llama"])


def test_sft_rows_are_rendered_with_the_template(tmp_path):
    """ChatRows tokenizes the prompt the template renders (the SFT recipe's ``chat_template``)."""
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")

    class CharTokenizer:   # one id per character: the rendered text is read back exactly
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[ord(c) for c in text] for text in texts]}

    ids = {"eos": 0, "pad": 0, "mask": 1, "dlm_pad": 2}
    for template in ("project", "released"):
        rows = ChatRows.from_jsonl(path, CharTokenizer(), seq_len=256, ids=ids, chat_template=template)
        prompt, response = split_chat(RECORD, template=template)
        assert "".join(map(chr, rows.prompts[0])) == prompt and "".join(map(chr, rows.responses[0])) == response
