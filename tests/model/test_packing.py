"""Packed forwards (``model.packing``): sequences end to end in one row, each attending only to itself."""
import pytest
import torch

from diffucoder.errors import DiffucoderError
from diffucoder.model import build_config, build_model
from diffucoder.model.packing import packed_hidden_states

MICRO = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return build_model(build_config("tiny", **MICRO), seed=0, attn_implementation=request.param).eval()


def test_each_packed_sequence_gets_its_hidden_states_alone(model):
    generator = torch.Generator().manual_seed(0)
    sequences = [torch.randint(0, 120, (n,), generator=generator) for n in (7, 1, 12, 3)]
    with torch.no_grad():
        packed = packed_hidden_states(model, sequences)
        alone = [model.model(input_ids=s[None]).last_hidden_state[0] for s in sequences]
    assert packed.shape == (7 + 1 + 12 + 3, 32)
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)
    # attention stays within a sequence: changing one leaves the others' states as they were
    changed = [sequences[0], sequences[1], torch.flip(sequences[2], [0]), sequences[3]]
    with torch.no_grad():
        again = packed_hidden_states(model, changed)
    torch.testing.assert_close(again[:8], packed[:8], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again[20:], packed[20:], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(again[8:20], packed[8:20])


def test_the_model_keeps_its_attention_after_a_packed_forward_and_after_a_failing_one(model):
    implementation = model.config._attn_implementation
    with torch.no_grad():
        packed_hidden_states(model, [torch.tensor([1, 2, 3])])
        assert model.config._attn_implementation == implementation
        with pytest.raises(IndexError):
            packed_hidden_states(model, [torch.tensor([1, 10_000])])   # beyond the vocabulary
    assert model.config._attn_implementation == implementation


def test_bad_sequences_are_refused_by_name(model):
    with pytest.raises(DiffucoderError, match="non-empty 1-D"):
        packed_hidden_states(model, [])
    with pytest.raises(DiffucoderError, match="non-empty 1-D"):
        packed_hidden_states(model, [torch.tensor([1, 2]), torch.tensor([], dtype=torch.long)])
    with pytest.raises(DiffucoderError, match="non-empty 1-D"):
        packed_hidden_states(model, [torch.tensor([[1, 2]])])
