"""Stage 0 on the teacher's mixtures (neuralese.mixtures, `pretrain.objective: mixtures`): the batched loss
against one written out by hand, row by row; CoT2's teacher; the command end to end; bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from neuralese.config import (
    EnvConfig,
    EvalConfig,
    ModelConfig,
    NeuraleseConfig,
    PretrainConfig,
    RunConfig,
    TinyModelConfig,
)
from neuralese.envs import env_texts, make_env
from neuralese.envs.mnns import path_distribution, value_text
from neuralese.errors import ConfigError
from neuralese.mixtures import collate, mixture_loss, mixture_rows, reachable_texts
from neuralese.tiny import NUMBER_PATTERN, PIECE_PATTERN, build_tiny_model, build_tokenizer

SHAPE = TinyModelConfig(
    arch="gpt2", hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=128
)


def model_for(rows, pattern=PIECE_PATTERN, seed=0):
    tok = build_tokenizer(env_texts(rows) + reachable_texts(rows), pattern=pattern)
    return tok, build_tiny_model(tok, SHAPE, seed=seed).eval()


def loss_by_hand(model, tok, row) -> torch.Tensor:
    """One row, unpadded: prompt embeddings, then each step's teacher mixture, then the tail's tokens;
    soft cross-entropy at the steps, hard at the tail."""
    table = model.get_input_embeddings().weight
    prompt = torch.tensor(tok(row["prompt"]).input_ids)
    steps = []
    for texts, weights in zip(row["reachable"], row["reachable_weights"]):
        w = torch.zeros(len(tok))
        for text, p in zip(texts, weights):
            w[tok.convert_tokens_to_ids(text)] += p
        steps.append(w)
    teacher = torch.stack(steps)  # [K, V]
    tail_text = row["completion"][len("".join(row["written_steps"])) :]
    tail = torch.tensor(tok(tail_text, add_special_tokens=False).input_ids + [tok.eos_token_id])
    embeds = torch.cat([table[prompt], teacher @ table, table[tail]])[None]
    logp = F.log_softmax(model(inputs_embeds=embeds).logits[0], -1)
    P, K = len(prompt), len(teacher)
    soft = -(teacher * logp[P - 1 : P - 1 + K]).sum()
    hard = -sum(logp[P - 1 + K + j, t] for j, t in enumerate(tail.tolist()))  # token j read from P-1+K+j
    return soft + hard


@pytest.mark.parametrize(
    "name, args, pattern",
    [
        (
            "reach",
            {"nodes": 16, "hops": 4, "min_hops": 2, "cot": True},
            PIECE_PATTERN,
        ),  # prompts of several lengths
        ("mnns", {"count": 4, "min_count": 2, "values": True, "cot": True}, NUMBER_PATTERN),  # 1-3 steps
    ],
)
def test_batched_loss_is_each_row_written_out_by_hand(name, args, pattern):
    rows = make_env(name, args).dataset("test", 12, seed=0)
    assert len({len(r["reachable"]) for r in rows}) > 1 and len({len(r["prompt"]) for r in rows}) > 1
    tok, model = model_for(rows, pattern)
    data = mixture_rows(rows, tok, "rows")
    loss, per_row = mixture_loss(model, collate(list(data), len(tok), tok.pad_token_id))
    expected = torch.stack([loss_by_hand(model, tok, row) for row in rows])
    torch.testing.assert_close(per_row, expected.detach(), rtol=1e-5, atol=1e-5)
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)
    # Gradients reach the embedding table through the mixtures as well as through the tokens.
    loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_the_teacher_of_mnns_is_cot2s_distribution_over_every_sign_path():
    rows = make_env("mnns", {"count": 4, "values": True, "cot": True}).dataset("test", 8, seed=1)
    tok, _ = model_for(rows, NUMBER_PATTERN)
    batch = collate(list(mixture_rows(rows, tok, "rows")), len(tok), tok.pad_token_id)
    for b, row in enumerate(rows):
        for k in range(3):
            expected = torch.zeros(len(tok))
            for value, p in path_distribution(row["numbers"], k + 1).items():
                expected[tok.convert_tokens_to_ids(value_text(value))] += p
            torch.testing.assert_close(batch["teacher"][b, k], expected)
        answer = tok.convert_tokens_to_ids(value_text(int(row["answer"])))
        assert batch["labels"][b][batch["labels"][b] >= 0].tolist() == [answer, tok.eos_token_id]


def mnns_config(tmp_path, **pretrain) -> RunConfig:
    return RunConfig(
        output_dir=str(tmp_path / "run"),
        model=ModelConfig(
            path=str(tmp_path / "as-is"), tiny=TinyModelConfig(**{**vars(SHAPE), "number_pieces": True})
        ),
        env=EnvConfig(
            name="mnns", args={"count": 4, "values": True, "cot": True}, train_size=512, test_size=64
        ),
        neuralese=NeuraleseConfig(
            mode="latent", space="embedding", input="latent_only", projection="identity", num_thoughts=3
        ),
        eval=EvalConfig(n=64, max_new_tokens=2),
        pretrain=PretrainConfig(**{"max_steps": 60, "batch_size": 64, "learning_rate": 3e-3, **pretrain}),
    )


def test_pretrain_on_mixtures_learns_the_teacher_and_scores_with_thoughts(tmp_path):
    from neuralese.policy import NeuralesePolicy
    from neuralese.pretrain import pretrain

    cfg = mnns_config(tmp_path, objective="mixtures")
    folder = pretrain(cfg)
    log = json.loads((folder / "pretrain_log.json").read_text())
    assert [p["phase"] for p in log["phases"]] == ["teacher mixtures"]
    losses = [e["loss"] for e in log["log_history"] if "loss" in e]
    assert losses[-1] < 0.7 * losses[0]  # the sum of 3 soft and 2 hard cross-entropies falls
    assert (
        log["evaluation"]["mean_generated_positions"] > 4
    )  # read with 3 thoughts, then the answer (and eos)
    # Every value a thought can weigh is one token of the saved tokenizer, test-only sums included.
    policy = NeuralesePolicy.from_pretrained(folder, config=cfg.neuralese)
    test = make_env("mnns", cfg.env.args).dataset("test", 64, seed=0)
    for text in reachable_texts(test):
        assert len(policy.tokenizer(text, add_special_tokens=False).input_ids) == 1


def test_bad_input_is_named(tmp_path):
    from neuralese.config import validate
    from neuralese.pretrain import pretrain

    cfg = mnns_config(tmp_path, objective="mixtures")
    cfg.env = EnvConfig(name="addition", train_size=32, test_size=8)  # no `reachable` column
    with pytest.raises(ConfigError, match="no reachable, reachable_weights"):
        pretrain(cfg)
    with pytest.raises(ConfigError, match="pretrain.objective"):
        validate(mnns_config(tmp_path, objective="mixtures", thought_tokens_max=2))
    rows = make_env("mnns", {"count": 4, "values": True, "cot": True}).dataset("test", 4, seed=0)
    tok = build_tokenizer(env_texts(rows))  # digits, not number pieces: "+12" is two tokens
    with pytest.raises(ConfigError, match=r"rows row \d step \d: reachable text '[+-]\d+' is 2 tokens"):
        mixture_rows(rows, tok, "rows")
    bad = rows.map(
        lambda r: {"reachable_weights": [[w * 2 for w in step] for step in r["reachable_weights"]]}
    )
    tok, _ = model_for(rows, NUMBER_PATTERN)
    with pytest.raises(ConfigError, match="rows row 0 step 0: `reachable_weights` must be a distribution"):
        mixture_rows(bad, tok, "rows")
