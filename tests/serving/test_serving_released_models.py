"""Serving released models: ``chat.template`` renders chat messages as the released Instruct models were
prompted, and a directory in the released Dream / DiffuCoder layout (sharded weights, remote-code slow
tokenizer) loads and answers, in-process and through ``diffucoder serve``."""
from __future__ import annotations

import httpx
import pytest

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.sampling import load_tokenizer
from diffucoder.serving import ServeConfig
from diffucoder.serving.engine import Engine
from diffucoder.serving.requests import RequestParser
from serving_helpers import start_server
from tests.model.released_layout import released_ids, write_released_dir

MESSAGES = [{"role": "user", "content": " Write f. "}]
RELEASED_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nWrite f.\n<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    return write_released_dir(root / "base"), write_released_dir(root / "instruct", instruct=True, seed=1)


def test_presets_pick_the_template():
    assert load_config(ServeConfig, recipe_path("tiny-cpu", "serve")).chat.template == "project"
    assert load_config(ServeConfig, recipe_path("7b-gpu", "serve")).chat.template == "released"


def test_a_released_base_layout_loads_and_answers_in_process(released):
    base, _ = released
    cfg = load_config(ServeConfig, None, ["defaults.max_tokens=6", "chat.template=released"])
    engine = Engine.load(base, cfg)
    ids = released_ids(base)
    assert engine.stop_ids == [ids["<|endoftext|>"]] and engine.mask_id == ids["<|mask|>"]
    parser = RequestParser(cfg, engine)
    chat = parser.chat({"messages": MESSAGES})
    assert chat.prompts == [RELEASED_PROMPT]
    assert list(chat.requests[0].prompt_ids) == engine.encode(RELEASED_PROMPT)
    instances = parser.instances([{"messages": MESSAGES}], {})
    assert instances.prompts == [RELEASED_PROMPT]
    plain = RequestParser(load_config(ServeConfig, None, ["defaults.max_tokens=6"]), engine).chat({"messages": MESSAGES})
    assert plain.prompts == ["<|im_start|>user\n Write f. <|im_end|>\n<|im_start|>assistant\n"]
    completion = engine.generate(parser.completion({"prompt": "def add(a, b):\n"}).requests)[0]
    assert completion.finish_reason in ("stop", "length") and completion.completion_tokens <= 6
    assert completion.prompt_tokens == len(engine.encode("def add(a, b):\n"))


@pytest.mark.integration
def test_diffucoder_serve_answers_from_a_released_instruct_layout(released, tmp_path):
    _, instruct = released
    server = start_server(instruct, tmp_path, "chat.template=released", "sampler.stop=dlm_pad")
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            reply = http.post("/openai/v1/chat/completions",
                              json={"model": "diffucoder", "messages": MESSAGES, "max_tokens": 4})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            tokenizer = load_tokenizer(instruct)
            assert body["usage"]["prompt_tokens"] == len(tokenizer([RELEASED_PROMPT])["input_ids"][0])
            assert isinstance(body["choices"][0]["message"]["content"], str)
            assert body["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.stop()
