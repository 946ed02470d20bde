"""Thinking across models (neuralese.translate.cross), on two tiny real models that differ in width and tokenizer.

- the rollout's log-probs equal the recompute's within 1e-5, for every window, with and without noise;
- gradients reach the translator at every window, and equal those of a literal, cache-free unrolling
  of A's chain, the translation and B's pass; a window of w lets gradient cross at most w of A's edges;
- with B's gate closed B reads nothing from A: it is the plain model on its thought tokens;
- translators, folders and settings that do not fit are errors that name the file or key.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from neuralese.build import check_run
from neuralese.config import CrossConfig, ModelConfig, NeuraleseConfig, RunConfig, TinyModelConfig
from neuralese.envs import env_texts, make_env
from neuralese.errors import AlignmentError, CheckpointError, ConfigError
from neuralese.tiny import DIGIT_PAIR_PATTERN, build_tiny_model, build_tokenizer, save_tiny
from neuralese.translate.chain import THINKER
from neuralese.translate.cross import CrossModelPolicy, build_cross_policy
from neuralese.translate.maps import Translator

PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999="]  # different lengths: left padding in the batch
K = 3
SIGMA = 0.2


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A (width 32, one digit a token) and B (width 48, digit pairs), untrained, saved; and a random A->B
    translator folder fitted "on" them (its meta names their folders)."""
    root = tmp_path_factory.mktemp("cross")
    texts = env_texts(make_env("addition", {"digits": 3}).dataset("train", 200, seed=0))
    tok_a = build_tokenizer(texts)
    tok_b = build_tokenizer(texts + [f"{i:02d}" for i in range(100)], pattern=DIGIT_PAIR_PATTERN)
    shape = dict(num_layers=2, num_heads=2, intermediate_size=64)
    a = save_tiny(
        build_tiny_model(tok_a, TinyModelConfig(hidden_size=32, **shape), seed=1), tok_a, root / "A"
    )
    b = save_tiny(
        build_tiny_model(tok_b, TinyModelConfig(hidden_size=48, **shape), seed=2), tok_b, root / "B"
    )
    torch.manual_seed(0)
    meta = {"source": "A", "target": "B", "layer": -1, "source_path": str(a), "target_path": str(b)}
    translator = Translator("linear", 32, 48, meta=meta)
    translator.save(root / "linear" / "A-to-B")
    return a, b, root / "linear" / "A-to-B"


def cross_config(pair, thinker_input="gated_sum", **neuralese) -> RunConfig:
    a, b, translator = pair
    nz = {"mode": "latent", "num_thoughts": K, "tbptt_window": 2, **neuralese}
    return RunConfig(
        model=ModelConfig(path=str(b)),
        neuralese=NeuraleseConfig(**nz),
        cross=CrossConfig(thinker=str(a), translator=str(translator), thinker_input=thinker_input),
    )


def make_policy(
    pair, gate: float = 1.0, seed: int = 0, thinker_input="gated_sum", **neuralese
) -> CrossModelPolicy:
    """A cross policy with B's and A's gates open at random (so A's chain and B's thoughts matter)."""
    policy = build_cross_policy(cross_config(pair, thinker_input, **neuralese), "cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        for adapter in (policy.adapter, policy.thinker.adapter):
            adapter.gate_logit.normal_(0, gate) if gate else None
    return policy


def rollout(policy, prompts=PROMPTS, max_new_tokens=5, temperature=1.0, seed=0, thoughts=None):
    ids, mask = policy.encode(prompts)
    return policy.rollout(
        ids, mask, max_new_tokens, temperature, torch.Generator().manual_seed(seed), thoughts=thoughts
    )


# ----------------------------------------------------------------------------- consistency

CASES = [
    (w, noise, inp)
    for w in (0, 1, 2, "full")
    for noise in (0.0, SIGMA)
    for inp in ("gated_sum", "latent_only")
]


@pytest.mark.parametrize("window,noise,inp", CASES)
def test_recompute_equals_sampling_logprobs(pair, window, noise, inp):
    policy = make_policy(
        pair, noise_std=noise, input=inp, thinker_input="latent_only" if noise else "gated_sum"
    )
    ro = rollout(policy)
    assert ro.attention_mask[:, 0].min() == 0, "the batch must contain left padding"
    # Live A-chain edges are recomputed only when something in A needs a gradient: make it so.
    probe = torch.zeros(*ro.extra[f"{THINKER}ids"].shape, 32, requires_grad=True)
    rc = policy.mode.recompute(policy, ro, window, None, False, thinker_probe=probe)
    torch.testing.assert_close(rc.logprobs, ro.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(policy.recompute(ro, window).logprobs, ro.logprobs, atol=1e-5, rtol=0)
    assert rc.logprobs[~ro.loss_mask].abs().max() == 0
    thought = ro.feedback_mask & ~ro.action_mask
    assert (thought.sum(-1) == K).all()
    if noise:  # the translation's noise is part of the policy's log-prob at every thought position
        assert (rc.thought_logprobs[thought] != 0).all() and ro.sampler == "gaussian"
    else:
        assert (rc.thought_logprobs == 0).all()


def test_rollout_feeds_the_translated_thoughts(pair):
    policy = make_policy(pair)
    ro = rollout(policy, temperature=0.0)
    P = ro.prompt_length
    assert (ro.input_ids[:, P : P + K] == policy.thought_token_id).all()
    f = ro.extra[f"{THINKER}thoughts"]  # [B, K, 32]
    torch.testing.assert_close(ro.feedback[:, P : P + K], policy.translator(f))
    # A read the same texts in its own tokenizer: one digit a token, so more tokens than B's pairs.
    a_ids, a_mask = ro.extra[f"{THINKER}ids"], ro.extra[f"{THINKER}mask"]
    texts = policy.thinker.tokenizer.batch_decode(
        [r[m.bool()][: m.sum() - (K - 1)] for r, m in zip(a_ids, a_mask)]
    )
    assert texts == PROMPTS and a_ids.shape[1] - (K - 1) > P
    # Shuffled thoughts: what is given is what B reads.
    other = ro.feedback[:, P:].roll(-1, dims=0)
    shuffled = rollout(policy, temperature=0.0, thoughts=other)
    torch.testing.assert_close(shuffled.feedback[:, P : P + K], other[:, :K])


def test_closed_gate_reads_nothing_and_still_gets_a_gradient(pair):
    policy = make_policy(pair, gate=0.0)
    ro = rollout(policy)
    with torch.no_grad():
        plain = policy.model(
            input_ids=ro.input_ids, attention_mask=ro.attention_mask, position_ids=ro.position_ids
        )
    logp = torch.log_softmax(plain.logits[:, :-1], -1).gather(-1, ro.input_ids[:, 1:, None]).squeeze(-1)
    rc = policy.recompute(ro, "full")
    torch.testing.assert_close(
        rc.token_logprobs[:, 1:], torch.where(ro.action_mask[:, 1:], logp, 0.0), atol=1e-6, rtol=0
    )
    rc.logprobs.sum().backward()
    assert policy.adapter.gate_logit.grad.abs().sum() > 0
    # A zero translator feeds zeros: B again reads nothing, whatever its gate.
    policy = make_policy(pair)
    with torch.no_grad():
        for p in policy.translator.parameters():
            p.zero_()
    assert (rollout(policy).feedback == 0).all()


# ----------------------------------------------------------------------------- gradients


def literal_logprobs(policy: CrossModelPolicy, ro, window) -> torch.Tensor:
    """The rule written out with no cache: each live thought of A is a fresh forward over A's prefix, whose
    live positions take the live thoughts before it; B reads the translations in one teacher-forced pass."""
    A, P = policy.thinker, ro.prompt_length
    ids, mask, pos = (ro.extra[f"{THINKER}{n}"] for n in ("ids", "mask", "positions"))
    rec = ro.extra[f"{THINKER}thoughts"]
    pa = ids.shape[1] - (K - 1)
    embeds = A.embed(ids)
    const = embeds.clone()
    const[:, pa:] = A.adapter.combine(embeds[:, pa:], rec[:, :-1])
    k = K if window == "full" else window
    f, x = list(rec.unbind(1)), const.clone()
    for i in range(K - k, K):
        s = pa + i - 1  # the source of thought i
        out = A.model(
            inputs_embeds=x[:, : s + 1],
            attention_mask=mask[:, : s + 1],
            position_ids=pos[:, : s + 1],
            output_hidden_states=True,
        )
        f[i] = A.adapter.vector(A.thought_source(out, -1), A.embedding_table)
        if i < K - 1:
            x = x.clone()
            x[:, pa + i] = A.adapter.combine(embeds[:, pa + i], f[i])
    y = policy.translator(torch.stack(f, 1))
    xb = policy.embed(ro.input_ids).clone()
    xb[:, P : P + K] = policy.adapter.combine(xb[:, P : P + K], y)
    logits = policy.model(
        inputs_embeds=xb, attention_mask=ro.attention_mask, position_ids=ro.position_ids
    ).logits
    lp = (
        torch.log_softmax(logits[:, :-1] / ro.temperature, -1)
        .gather(-1, ro.input_ids[:, 1:, None])
        .squeeze(-1)
    )
    return torch.cat([torch.zeros_like(lp[:, :1]), torch.where(ro.action_mask[:, 1:], lp, 0.0)], 1)


def grads(policy, logp, weights) -> dict[str, torch.Tensor]:
    policy.zero_grad(set_to_none=True)
    (logp * weights).sum().backward()
    return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("window", [0, 1, 2, "full"])
@pytest.mark.parametrize("thinker_input", ["gated_sum", "latent_only"])
def test_gradients_equal_literal_unrolling(pair, window, thinker_input):
    policy = make_policy(pair, thinker_input=thinker_input)
    policy.thinker.requires_grad_(True)  # A trainable, so the window shows in its weights' gradients
    ro = rollout(policy)
    weights = torch.rand(ro.logprobs.shape, generator=torch.Generator().manual_seed(1))
    ours = grads(policy, policy.recompute(ro, window).token_logprobs, weights)
    ref = grads(policy, literal_logprobs(policy, ro, window), weights)
    assert ours.keys() == ref.keys()
    for name in ref:
        scale = max(ref[name].abs().max().item(), 1.0)
        torch.testing.assert_close(ours[name], ref[name], atol=5e-6 * scale, rtol=1e-4, msg=name)
    assert ours["adapter.translator.linear.weight"].abs().sum() > 0  # the translator learns at every window
    reaches_a = any(n.startswith("thinker.model.") for n in ours)
    assert reaches_a == (window != 0)


@pytest.mark.parametrize("window", [0, 1, 2, "full"])
def test_window_bounds_the_thinker_edges_that_carry_gradient(pair, window):
    policy = make_policy(pair)
    ro = rollout(policy, temperature=0.0)
    la = ro.extra[f"{THINKER}ids"].shape[1]
    probe = torch.zeros(ro.input_ids.shape[0], la, 32, requires_grad=True)
    policy.mode.recompute(policy, ro, window, None, False, thinker_probe=probe).logprobs.sum().backward()
    g = probe.grad.abs().sum(-1).sum(0) if probe.grad is not None else torch.zeros(la)
    pa = la - (K - 1)
    k = K if window == "full" else window
    # Thought i's source is at pa + i - 1; the last k thoughts are live.
    assert {int(i) for i in torch.nonzero(g > 0)} == set(range(pa + K - k - 1, pa + K - 1))


def test_translation_edges_carry_the_gradient_the_trainer_logs(pair):
    policy = make_policy(pair)
    ro = rollout(policy)
    probe = torch.zeros(*ro.input_ids.shape, policy.hidden_size, requires_grad=True)
    policy.recompute(ro, 0, probe=probe).logprobs.sum().backward()
    P = ro.prompt_length
    g = probe.grad.abs().sum(-1).sum(0)
    assert {int(i) for i in torch.nonzero(g > 0)} == set(range(P - 1, P + K - 1))


# ----------------------------------------------------------------------------- bad input


def test_translator_for_other_widths_or_layers_is_refused(pair, tmp_path):
    a, b, good = pair
    meta = {
        k: v
        for k, v in json.loads((good / "translator.json").read_text()).items()
        if k not in ("kind", "source_width", "target_width", "hidden")
    }
    cases = {
        "source_width": Translator("linear", 48, 48, meta={**meta}),
        "target_width": Translator("linear", 32, 64, meta={**meta}),
        "layer": Translator("linear", 32, 48, meta={**meta, "layer": -2}),
        "source_path": Translator("linear", 32, 48, meta={**meta, "source_path": str(tmp_path / "other")}),
    }
    for key, t in cases.items():
        cfg = cross_config(pair)
        cfg.cross.translator = str(t.save(tmp_path / key))
        with pytest.raises(AlignmentError, match=f"translator.json: {key} .*fitted for other models"):
            build_cross_policy(cfg, "cpu")


def test_missing_folders_are_named(pair, tmp_path):
    cfg = cross_config(pair)
    cfg.cross.translator = str(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="nowhere"):
        build_cross_policy(cfg, "cpu")
    cfg = cross_config(pair)
    cfg.cross.thinker = str(tmp_path / "no-thinker")
    with pytest.raises(CheckpointError, match="cross.thinker.*no-thinker"):
        build_cross_policy(cfg, "cpu")


def test_a_prompt_the_thinker_cannot_read_is_refused(pair, tmp_path):
    """A thinker whose tokenizer never saw '+' cannot read B's prompts."""
    tok = build_tokenizer(["123=579", "9=10"])
    shape = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    a = save_tiny(build_tiny_model(tok, shape), tok, tmp_path / "A-no-plus")
    cfg = cross_config(pair)
    t = Translator("linear", 32, 48, meta={"layer": -1, "source_path": str(a), "target_path": str(pair[1])})
    cfg.cross.thinker, cfg.cross.translator = str(a), str(t.save(tmp_path / "t"))
    policy = build_cross_policy(cfg, "cpu")
    with pytest.raises(AlignmentError, match="cross.thinker .*A-no-plus.*'123\\+456=' with unknown tokens"):
        rollout(policy)


@pytest.mark.parametrize(
    "key,value",
    [
        ("neuralese.mode", "hybrid"),
        ("model.lora.r", 4),
        ("neuralese.space", "embedding"),
        ("cross.translator", None),
    ],
)
def test_settings_a_cross_run_cannot_take(pair, key, value):
    cfg = cross_config(pair)
    section, field = key.split(".", 1)
    if field == "lora.r":
        cfg.model.lora = dataclasses.replace(cfg.model.lora, r=value)
    else:
        setattr(getattr(cfg, section), field, value)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        check_run(cfg)


# ----------------------------------------------------------------------------- the trainer and the CLI


def test_trainer_runs_cross_model_thinking_and_inspect_reads_both_heads(pair, tmp_path, capsys):
    """Two RL steps through the one trainer: only the translator and B's gate move; the run folder
    loads back as a cross policy for eval and inspect; export refuses it by name."""
    from runs import run_config

    from neuralese.cli import main
    from neuralese.inspector import format_table, inspect_thoughts
    from neuralese.load import load_policy
    from neuralese.trainer import Trainer

    a, b, translator = pair
    cfg = run_config(b, tmp_path / "run")
    cfg.cross = CrossConfig(thinker=str(a), translator=str(translator))
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    trainer.train()
    moved = {n for n, p in trainer.policy.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("adapter.") for n in moved), moved
    assert "adapter.translator.linear.weight" in moved
    policy = load_policy(tmp_path / "run")
    assert isinstance(policy, CrossModelPolicy)
    torch.testing.assert_close(policy.translator.linear.weight, trainer.policy.translator.linear.weight)
    ins = inspect_thoughts(policy, "123+456=")
    assert len(ins.thoughts) == K and set(ins.thoughts[0].lenses) == {"A's head on f", "B's head on y"}
    table = format_table(ins)
    assert "A's head on f" in table and "thinker A:" in table
    assert (
        main(
            [
                "eval",
                str(tmp_path / "run"),
                "--env",
                "addition",
                "--env-args",
                "{digits: 3}",
                "--n",
                "4",
                "--thoughts",
                "shuffled",
            ]
        )
        == 0
    )
    assert '"thoughts": "shuffled"' in capsys.readouterr().out
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out")]) == 2
    assert "cross-model run" in capsys.readouterr().err


def test_lora_reader_trains_with_the_translator(pair):
    """`cross.reader: lora`: B's LoRA weights get gradients beside the translator; B's own weights do not."""
    cfg = cross_config(pair)
    cfg.cross.reader, cfg.model.lora = "lora", dataclasses.replace(cfg.model.lora, r=4)
    check_run(cfg)
    policy = build_cross_policy(cfg, "cpu")
    ro = rollout(policy)
    g = grads(policy, policy.recompute(ro, 2).logprobs, torch.ones(ro.logprobs.shape))
    assert any("lora_" in n for n in g) and "adapter.translator.linear.weight" in g
    assert all("lora_" in n or n.startswith("adapter.") for n in g), sorted(g)
