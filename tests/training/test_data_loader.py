"""Rows for the trainer: seeded, resumable order; shard pieces; SFT rows with the chat template."""
import json

import numpy as np
import pytest
import torch

from diffucoder.data.shards import TokenShards
from diffucoder.errors import DiffucoderError
from diffucoder.training.chat import IM_END, render_prompt, split_chat
from diffucoder.training.data_loader import ChatRows, RowLoader, ShardRows
from diffucoder.training.inputs import load_tokenizer, special_ids
from tests.training.training_helpers import make_shards


class Numbers:
    """Rows whose single token is their own index (to see which rows a rank got)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def batch(self, indices):
        from diffucoder.training.data_loader import Batch
        return Batch(torch.as_tensor(np.asarray(indices))[:, None], None, None)


def drain(loader, steps):
    return [loader.next_batch().tokens[:, 0].tolist() for _ in range(steps)]


def test_ranks_take_disjoint_slices_and_epochs_reshuffle():
    ranks = [RowLoader(Numbers(10), batch_size=2, rank=r, world_size=2, seed=5) for r in range(2)]
    per_rank = [drain(loader, 4) for loader in ranks]       # 2 steps of 4 rows fill epoch 0 (8 of 10)
    epoch0 = per_rank[0][:2] + per_rank[1][:2]
    flat = [i for rows in epoch0 for i in rows]
    assert len(set(flat)) == 8                               # no row twice within an epoch
    assert ranks[0].epoch == 1                               # the 2 left over were skipped
    assert per_rank[0][2:] != per_rank[0][:2]


def test_position_round_trips_exactly():
    loader = RowLoader(Numbers(50), batch_size=3, rank=0, world_size=1, seed=1)
    drain(loader, 7)
    state = loader.state_dict()
    expected = drain(loader, 20)                             # crosses an epoch boundary
    again = RowLoader(Numbers(50), batch_size=3, rank=0, world_size=1, seed=1)
    again.load_state_dict(state)
    assert drain(again, 20) == expected
    other = RowLoader(Numbers(50), batch_size=4, rank=0, world_size=1, seed=1)
    with pytest.raises(DiffucoderError, match="same data and layout"):
        other.load_state_dict(state)


def test_too_few_rows_is_an_error():
    with pytest.raises(DiffucoderError, match="cannot fill one micro-step"):
        RowLoader(Numbers(3), batch_size=2, rank=0, world_size=2, seed=0)


def test_shard_rows_split_packed_rows_into_pieces(tmp_path):
    shards = TokenShards.open(make_shards(tmp_path / "c", seq_len=32))
    whole, halves = ShardRows(shards.train), ShardRows(shards.train, seq_len=16)
    assert len(halves) == 2 * len(whole)
    row = whole.batch(np.array([3])).tokens[0]
    pieces = halves.batch(np.array([6, 7])).tokens
    assert torch.equal(torch.cat([pieces[0], pieces[1]]), row)
    with pytest.raises(DiffucoderError, match="does not divide"):
        ShardRows(shards.train, seq_len=24)


def test_chat_rows_keep_the_prompt_out_of_the_loss_and_fill_with_dlm_pad(tmp_path):
    root = make_shards(tmp_path / "c")
    tok = load_tokenizer(root / "tokenizer", "data.tokenizer")
    ids = special_ids(tok, "data.tokenizer")
    record = {"messages": [{"role": "user", "content": "Add one."},
                           {"role": "assistant", "content": "```python\ndef f(x):\n    return x + 1\n```"}]}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(record) + "\n")
    rows = ChatRows.from_jsonl(path, tok, seq_len=96, ids=ids)
    batch = rows.batch(np.array([0]))
    prompt, response = split_chat(record)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    n_response = len(tok(response, add_special_tokens=False)["input_ids"])
    assert batch.prompt_mask[0].sum() == n_prompt and batch.prompt_mask[0, :n_prompt].all()
    assert batch.tokens[0, n_prompt + n_response] == ids["eos"]
    assert (batch.tokens[0, n_prompt + n_response + 1:] == ids["dlm_pad"]).all()
    assert batch.attention_mask.all()                         # dlm_pad is content, not padding
    assert tok.decode(batch.tokens[0, :n_prompt]) == prompt
    assert prompt.endswith("<|im_start|>assistant\n") and response.endswith(IM_END)
    with pytest.raises(DiffucoderError, match="longer than data.seq_len"):
        ChatRows.from_jsonl(path, tok, seq_len=8, ids=ids)


def test_chat_template_rejects_malformed_records():
    with pytest.raises(DiffucoderError, match="last message must be the assistant"):
        split_chat({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(DiffucoderError, match="message 0"):
        render_prompt([{"role": "robot", "content": "hi"}])


def test_canvas_jitter_draws_lengths_that_hold_the_answer_and_repeat_on_resume():
    prompts = [[7] * (3 + i % 5) for i in range(64)]
    responses = [[8] * (2 + i % 7) for i in range(64)]
    rows = ChatRows(prompts, responses, seq_len=32, dlm_pad_id=2, eos_id=0, canvas_jitter=0.5)
    indices = np.arange(64)
    lengths = rows.canvas_lengths(indices)
    bodies = [len(p) + len(r) + 1 for p, r in zip(prompts, responses)]
    assert all(b <= n <= 32 for b, n in zip(bodies, lengths))
    assert 16 <= sum(n < 32 for n in lengths) <= 48                      # about half the rows jittered
    assert rows.canvas_lengths(indices) == lengths                        # same rows, same lengths
    batch = rows.batch(indices)
    assert batch.attention_mask.sum(1).tolist() == lengths
    plain = ChatRows(prompts, responses, seq_len=32, dlm_pad_id=2, eos_id=0)
    assert plain.canvas_lengths(indices) is None and plain.batch(indices).attention_mask.all()
