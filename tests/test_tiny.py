"""Tiny models and tokenizers: built from task data, saved, loaded back like a user's checkpoint."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from neuralese.config import ModelConfig, TinyModelConfig
from neuralese.envs import env_texts, make_env
from neuralese.models import load_model
from neuralese.tiny import THOUGHT, build_tiny_model, build_tokenizer, save_tiny


def test_tokenizer_round_trips_every_string_of_the_task(tmp_path):
    env = make_env("multiplication", {"digits": 3, "cot": True})
    train = env.dataset("train", 300, seed=0)
    tok = build_tokenizer(env_texts(train))
    save_tiny(
        build_tiny_model(
            tok, TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
        ),
        tok,
        tmp_path,
    )
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    test = env.dataset("test", 300, seed=1)
    strings = env_texts(train) + env_texts(test)
    for s in strings:
        ids = loaded(s, add_special_tokens=False)["input_ids"]
        assert loaded.unk_token_id not in ids, s
        assert loaded.decode(ids) == s
    # Digits are single tokens: the model sees every digit on its own.
    assert len(loaded("1234", add_special_tokens=False)["input_ids"]) == 4


def test_tokenizer_words_and_specials():
    tok = build_tokenizer(["Every wumpus is a yumpus.", "Is Tom a wumpus or zumpus?"])
    text = "Is Tom a yumpus or wumpus?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == 7  # "Is", " Tom", " a", " yumpus", " or", " wumpus", "?"
    for special in (tok.pad_token, tok.eos_token, tok.bos_token, THOUGHT):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    thought_id = tok.convert_tokens_to_ids(THOUGHT)
    ids = tok("Is Tom" + THOUGHT * 3, add_special_tokens=False)["input_ids"]
    assert ids[-3:] == [thought_id] * 3
    assert tok.decode(ids, skip_special_tokens=True) == "Is Tom"
    assert tok.padding_side == "left"


def test_conversational_prompt_uses_the_chat_template():
    tok = build_tokenizer(["What is 2+2?", "4"])
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "user: What is 2+2?\nassistant:"
    assert tok.unk_token_id not in tok(text, add_special_tokens=False)["input_ids"]


def test_saved_tiny_model_reloads_with_identical_logits(tiny_dir):
    model, tok = load_model(tiny_dir, ModelConfig())
    plain = AutoModelForCausalLM.from_pretrained(tiny_dir)
    batch = tok(["123+456=", "9+1="], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = model(**batch).logits
        b = plain(**batch).logits
    assert torch.equal(a, b)
    assert model.config.model_type == "llama" and next(model.parameters()).dtype == torch.float32


def test_tiny_model_is_deterministic_and_qwen2_builds(tmp_path):
    tok = build_tokenizer(["1+2=3"])
    cfg = TinyModelConfig(arch="qwen2", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    a, b = build_tiny_model(tok, cfg, seed=3), build_tiny_model(tok, cfg, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    save_tiny(a, tok, tmp_path)
    model, _ = load_model(tmp_path)
    assert model.config.model_type == "qwen2"


def test_a_saved_tiny_tokenizer_gives_the_same_ids_for_every_architecture(tmp_path):
    # AutoTokenizer alone would load a qwen2 folder's tokenizer as Qwen2Tokenizer, whose byte-level
    # pre-tokenizer replaces the folder's and drops the words it has no bytes for.
    text = "12+34=46 the wumpus"
    tok = build_tokenizer([text])
    for arch in ("llama", "qwen2"):
        cfg = TinyModelConfig(arch=arch, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
        save_tiny(build_tiny_model(tok, cfg), tok, tmp_path / arch)
        _, loaded = load_model(tmp_path / arch)
        assert loaded(text).input_ids == tok(text).input_ids, arch
        assert loaded.decode(loaded(text, add_special_tokens=False).input_ids) == text
