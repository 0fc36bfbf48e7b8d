"""``serve_and_ask`` (the demo's last step), models from store artifacts, and the ``serve`` command."""
from __future__ import annotations

import pytest

from diffucoder.cli import main as cli_main
from diffucoder.errors import DiffucoderError
from diffucoder.serving.smoke import serve_and_ask
from diffucoder.serving.source import resolve_model_dir
from serving_helpers import direct_texts


@pytest.mark.integration
def test_serve_and_ask_a_store_artifact(served_model_dir, tmp_path, direct):
    from diffucoder.store import open_store
    store = open_store(tmp_path / "store")
    store.put_artifact("runs/r1/sft", served_model_dir, metadata={"kind": "model"})
    text = serve_and_ask(store.uri("runs/r1/sft"), "def add(a, b):", max_tokens=6,
                         overrides=("access_log=false", "defaults.steps=3"), timeout_s=120)
    assert text == direct_texts(*direct, ["def add(a, b):"], max_new_tokens=6, steps=3)[0]


@pytest.mark.integration
def test_serve_and_ask_chat_sends_the_prompt_as_a_user_message(served_model_dir, direct):
    from diffucoder.training.chat import IM_END, render_prompt
    question = "Write a function add(a, b) that returns a + b."
    text = serve_and_ask(served_model_dir, question, max_tokens=6, chat=True,
                         overrides=("access_log=false", "defaults.steps=3"), timeout_s=120)
    rendered = render_prompt([{"role": "user", "content": question}])
    assert text == direct_texts(*direct, [rendered], max_new_tokens=6, steps=3)[0].split(IM_END)[0]


def test_serve_and_ask_names_a_bad_model_dir(tmp_path):
    with pytest.raises(DiffucoderError, match="no-model"):
        serve_and_ask(tmp_path / "no-model", "x")


def test_model_locations(served_model_dir, tmp_path):
    assert resolve_model_dir(str(served_model_dir))[0] == served_model_dir
    (tmp_path / "empty").mkdir()
    for location, why in ((tmp_path / "missing", "no such directory"), (tmp_path / "empty", "not a model directory"),
                          ("http://example.com/m", "only file:// and s3://"),
                          ((tmp_path / "nothing").as_uri(), "cannot fetch")):
        with pytest.raises(DiffucoderError, match=why):
            resolve_model_dir(str(location))
    from diffucoder.store import open_store
    store = open_store(tmp_path / "store")
    store.put_artifact("m", served_model_dir)
    local, cleanup = resolve_model_dir(str(tmp_path / "store" / "m"))   # an artifact tree on disk
    assert (local / "config.json").read_bytes() == (served_model_dir / "config.json").read_bytes()
    cleanup()
    assert not local.exists()


def test_serve_command_is_registered_and_fails_cleanly(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        cli_main(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--model" in out and "batching.max_batch_size" in out and "127.0.0.1" in out
    assert cli_main(["serve", "--model", str(tmp_path / "absent"), "--port", "0"]) == 2
    assert "absent" in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(tmp_path), "--port", "0", "batching.queue_size=0"]) == 2
    assert "batching.queue_size" in capsys.readouterr().err
