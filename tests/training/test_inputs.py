"""The trainer's fetch helpers: a store artifact is cached, and a cached copy that no longer matches
its manifest (damaged between runs) is fetched again, never read."""
import json

from diffucoder.store import open_store
from diffucoder.training.inputs import fetch_dir, fetch_file

MODEL = {"config.json": json.dumps({"model_type": "Dream", "vocab_size": 64}),
         "tokenizer.json": json.dumps({"model": {"type": "BPE"}})}
CHAT = "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                        {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(20))


def publish(tmp_path, name: str, files: dict[str, str]) -> str:
    src = tmp_path / f"src-{name}"
    src.mkdir()
    for rel, text in files.items():
        (src / rel).write_text(text)
    open_store(tmp_path / "store").put_artifact(name, src)
    return (tmp_path / "store" / name).as_uri()


def test_a_damaged_cached_model_dir_is_fetched_again(tmp_path):
    uri = publish(tmp_path, "pretrain", MODEL)
    cached = fetch_dir(uri, "model.init_from", tmp_path / "cache" / "models")
    assert (cached / "config.json").read_text() == MODEL["config.json"]
    (cached / "config.json").write_text(MODEL["config.json"].replace("64", "65"))   # same size, other bytes
    again = fetch_dir(uri, "model.init_from", tmp_path / "cache" / "models")
    assert again == cached and (again / "config.json").read_text() == MODEL["config.json"]


def test_a_truncated_cached_data_file_is_fetched_again(tmp_path):
    uri = publish(tmp_path, "tasks", {"sft-train.jsonl": CHAT, "sft-heldout.jsonl": CHAT[:200]})
    path = fetch_file(uri, "sft-train.jsonl", "data.uri", tmp_path / "cache" / "data")
    assert path.read_text() == CHAT
    path.write_text(CHAT[: len(CHAT) // 2])       # a copy cut short
    assert fetch_file(uri, "sft-train.jsonl", "data.uri", tmp_path / "cache" / "data").read_text() == CHAT
    other = fetch_file(uri, "sft-heldout.jsonl", "data.val_file", tmp_path / "cache" / "data")
    assert other.parent == path.parent and other.read_text() == CHAT[:200] and path.read_text() == CHAT
