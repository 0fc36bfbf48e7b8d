"""An exported model directory in the released layout loads without diffucoder and gives the same logits.

The remote-code modules (``diffucoder.model.remote_code``) are checked here in-process against
``DreamModel`` bit for bit, and, marked integration, in a fresh virtual environment that has
torch / transformers / safetensors but no diffucoder, through
``AutoModel.from_pretrained(dir, trust_remote_code=True)``.
"""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from diffucoder.data.tokenizer import save_tokenizer, train_bpe
from diffucoder.model import build_config, build_model, load_model, position_ids_from_mask, save_model
from diffucoder.model.remote_code import REMOTE_CODE_FILES
from diffucoder.model.remote_code.configuration_dream import DreamConfig as RemoteConfig
from diffucoder.model.remote_code.modeling_dream import DreamModel as RemoteModel
from diffucoder.tasks import generate_suite
from diffucoder.training.export import save_model_dir
from diffucoder.training.metrics import MetricsLog

SHAPES = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rope_theta=1_000_000.0)


def batch():
    """Three rows: unpadded, left-padded by 3, and a single real token (the rest pads)."""
    ids = torch.randint(0, 290, (3, 11), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :10] = 0
    return ids, mask


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``save_model_dir`` (the trainers' export) of a random tiny model with a trained BPE."""
    root = tmp_path_factory.mktemp("export")
    texts = [t.instruction + "\n" + t.canonical_solution for t in generate_suite(seed=0, max_per_family=3)]
    tokenizer = train_bpe(texts, vocab_size=290)
    ids = save_tokenizer(tokenizer, root / "tok")
    config = build_config("tiny", mask_token_id=ids["mask"], pad_token_id=ids["pad"], bos_token_id=ids["eos"],
                          eos_token_id=ids["eos"], dlm_pad_token_id=ids["dlm_pad"], **SHAPES)
    model = build_model(config, seed=3).eval()
    model_dir, _ = save_model_dir(model, tokenizer, MetricsLog(root / "metrics.jsonl"), root / "work")
    return model_dir, model


def test_the_export_carries_the_released_layout(exported):
    model_dir, model = exported
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_dream.DreamConfig",
                                  "AutoModel": "modeling_dream.DreamModel"}
    assert config["model_type"] == "Dream" and config["architectures"] == ["DreamModel"]
    assert config["rope_theta"] == 1_000_000.0 == config["rope_parameters"]["rope_theta"]
    for source in REMOTE_CODE_FILES:
        assert (model_dir / source.name).read_bytes() == source.read_bytes()
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert {k: generation[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id",
                                       "dlm_pad_token_id")} == {
        "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "mask_token_id": 1, "dlm_pad_token_id": 2}
    assert "auto_map" not in json.loads((model_dir / "tokenizer_config.json").read_text())
    assert (model_dir / "tokenizer.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert torch.equal(load_model(model_dir).lm_head.weight, model.lm_head.weight)


@torch.no_grad()
def test_remote_code_gives_dream_model_logits_bit_for_bit(exported):
    model_dir, model = exported
    remote = RemoteModel.from_pretrained(model_dir).eval()
    assert type(remote.config) is RemoteConfig and remote.config.rope_theta == 1_000_000.0
    ids, mask = batch()
    assert torch.equal(remote(ids).logits, model(ids).logits)
    assert torch.equal(remote(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    causal = torch.tril(torch.ones(11, 11, dtype=torch.bool))[None, None] & mask.bool()[:, None, None, :]
    positions = position_ids_from_mask(mask)
    assert torch.equal(remote(ids, attention_mask=causal, position_ids=positions).logits,
                       model(ids, attention_mask=causal, position_ids=positions).logits)


def test_remote_config_reads_rope_as_either_transformers_writes_it():
    assert RemoteConfig(rope_theta=5e5).rope_theta == 5e5                                   # released key
    assert RemoteConfig(rope_parameters={"rope_type": "default", "rope_theta": 2e5}).rope_theta == 2e5
    assert RemoteConfig().rope_theta == 10000.0     # Dream's default: why exports write rope_theta
    with pytest.raises(ValueError, match="'yarn' is not supported"):
        RemoteConfig(rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0})
    with pytest.raises(ValueError, match="is_causal"):
        RemoteConfig(is_causal=True)


def test_sharded_save_writes_an_index_and_loads_back(tmp_path):
    model = build_model(build_config("tiny", **SHAPES), seed=1).eval()
    target = save_model(model, tmp_path / "sharded", max_shard_size="40KB")
    shards = sorted(p.name for p in target.glob("model-*.safetensors"))
    index = json.loads((target / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and set(index["weight_map"].values()) == set(shards)
    assert set(index["weight_map"]) == set(model.state_dict())
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(load_model(target)(ids, attention_mask=mask).logits,
                           model(ids, attention_mask=mask).logits)


FRESH_CHECK = """
import importlib.util, json, sys
import torch
found = importlib.util.find_spec("diffucoder")
if found is not None:
    sys.exit("diffucoder is importable here: " + str(found.origin))
from transformers import AutoConfig, AutoModel, AutoTokenizer
model_dir, inputs, out = sys.argv[1:4]
config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
batch = torch.load(inputs)
with torch.no_grad():
    logits = {"plain": model(batch["ids"]).logits, "padded": model(batch["ids"], attention_mask=batch["mask"]).logits}
torch.save(logits, out)
print(json.dumps({"model_class": type(model).__module__ + "." + type(model).__name__,
                  "config_class": type(config).__module__, "rope_theta": config.rope_theta,
                  "mask_token_id": config.mask_token_id, "tokens": tokenizer("def f(x):")["input_ids"]}))
"""


@pytest.mark.integration
def test_the_export_loads_and_matches_logits_in_a_fresh_venv_without_diffucoder(exported, tmp_path):
    model_dir, model = exported
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # A path in a .pth file is added as is: the .pth files inside it (this checkout's editable
    # install finder) are not processed, so torch and transformers import but diffucoder does not.
    (site / "parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    ids, mask = batch()
    torch.save({"ids": ids, "mask": mask}, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([str(python), "-c", FRESH_CHECK, str(model_dir), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["model_class"].startswith("transformers_modules.") and report["model_class"].endswith(
        "modeling_dream.DreamModel")
    assert report["config_class"].startswith("transformers_modules.")
    assert report["rope_theta"] == 1_000_000.0 and report["mask_token_id"] == 1
    assert report["tokens"] == AutoTokenizer.from_pretrained(str(model_dir))("def f(x):")["input_ids"]
    theirs = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(theirs["plain"], model(ids).logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(theirs["padded"], model(ids, attention_mask=mask).logits, rtol=0, atol=1e-6)
