"""A model adapted from Qwen2.5-Coder gets the released special-token ids: <|mask|> = 151666.

The tokenizer here is built locally with the ``tokenizers`` library to Qwen2.5's layout: a
byte-level BPE vocabulary of 151643 entries, then Qwen2.5's 22 added tokens at 151643-151664
(``<|endoftext|>`` ... ``<|file_sep|>``, as Qwen2.5's tokenizer_config.json lists them).
Appending ``<|mask|>`` alone would give it 151665; Dream and DiffuCoder have it at 151666,
after Dream's ``<|beginoftext|>`` (151665).
"""
import pytest
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from diffucoder.data.tokenizer import load_pretrained, save_tokenizer
from diffucoder.model import load_model
from diffucoder.training.inputs import special_ids

QWEN25_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",        # 151643-151656
                "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"]                                              # 151657-151664
QWEN25_BPE_SIZE = 151643


def qwen25_layout_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(alphabet))}
    vocab.update({f"ĠĠunused{i}": i for i in range(len(vocab), QWEN25_BPE_SIZE)})   # unreachable fillers
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens([AddedToken(t, normalized=False) for t in QWEN25_ADDED[:14]])
    raw.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN25_ADDED[14:]])
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen") / "Qwen2.5-Coder-layout"
    qwen25_layout_tokenizer().save_pretrained(str(path))
    return path


def test_the_fixture_has_qwen25_ids(qwen_dir):
    tok = PreTrainedTokenizerFast.from_pretrained(str(qwen_dir))
    assert len(tok) == 151665
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|file_sep|>")] \
        == [151643, 151644, 151645, 151664]
    tok.add_special_tokens({"mask_token": "<|mask|>"})       # what appending alone would give
    assert tok.mask_token_id == 151665


def test_adapting_qwen25_gives_the_released_ids(qwen_dir, tmp_path):
    tok = load_pretrained(str(qwen_dir), tmp_path / "dl")
    ids = save_tokenizer(tok, tmp_path / "tok")
    assert ids == {"eos": 151643, "pad": 151643, "mask": 151666, "dlm_pad": 151667}
    assert tok.convert_tokens_to_ids("<|beginoftext|>") == 151665
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645 and tok.eos_token == "<|endoftext|>"
    reloaded = load_pretrained(str(tmp_path / "tok"), tmp_path / "dl")
    assert save_tokenizer(reloaded, tmp_path / "tok2") == ids and len(reloaded) == 151668   # nothing added twice
    assert reloaded("x<|mask|><|dlm_pad|>", add_special_tokens=False)["input_ids"][-2:] == [151666, 151667]


def test_a_qwen25_base_tokenizer_without_dlm_pad_gets_it_after_the_mask(qwen_dir, tmp_path):
    """What SFT does with a Base model's tokenizer (no <|dlm_pad|>): the next id, 151667."""
    tok = load_pretrained(str(qwen_dir), tmp_path / "dl")
    tok.add_tokens([AddedToken("<|beginoftext|>", special=True, normalized=False),
                    AddedToken("<|mask|>", special=True, normalized=False)], special_tokens=True)
    assert special_ids(tok, "model.init_from", dlm_pad="optional") == {
        "eos": 151643, "pad": 151643, "mask": 151666, "dlm_pad": None}
    assert special_ids(tok, "model.init_from")["dlm_pad"] == 151667


def test_a_qwen2_checkpoint_takes_the_adapted_ids(tmp_path):
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=152064, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                        rope_theta=1e6, tie_word_embeddings=False, bos_token_id=151643,
                                        eos_token_id=151643))
    qwen.save_pretrained(tmp_path / "qwen")
    model = load_model(tmp_path / "qwen", dlm_pad_token_id=151667)
    assert (model.config.mask_token_id, model.config.dlm_pad_token_id, model.config.eos_token_id) == (
        151666, 151667, 151643)
    assert model.lm_head.weight.shape[0] == 152064 > 151667
