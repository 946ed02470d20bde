"""The framework held to an independent oracle of the neuralese contract (tests/oracle.py), on tiny real
models in fp32.

The framework runs the prompts as one left-padded batch over its KV cache; the oracle runs each alone,
a fresh forward per position. The rollout record (tokens, fed vectors, sampling log-probs, generated
positions), the recomputed log-probs for every window, the text, `neuralese eval`'s
mean_generated_positions, the shuffled control and an exported folder must all agree with it.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from oracle import Given, Oracle, Step
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from neuralese import NeuraleseConfig, NeuralesePolicy

PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999="]  # different lengths: left padding in the batch
ATOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tiny_dir, tmp_path_factory):
    """The tiny model with its eos embedding (tied to the head) set to 1.5 times the digit 6's: eos then
    wins where 6 would, so some answers end within the budget and others run to it."""
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    with torch.no_grad():
        table = model.get_input_embeddings().weight
        table[tok.eos_token_id] = 1.5 * table[tok.convert_tokens_to_ids("6")]
    out = tmp_path_factory.mktemp("oracle") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def policy_for(model_dir, gate: float = 1.0, seed: int = 0, **settings) -> NeuralesePolicy:
    """A policy with every feedback weight moved off its start, the gate lambda ~ N(0, gate^2) per dimension."""
    policy = NeuralesePolicy.from_pretrained(
        model_dir, config=NeuraleseConfig(**{"num_thoughts": 3, **settings})
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.adapter.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(gate * noise) if name == "gate_logit" else p.add_(0.5 * noise)
    return policy.eval()


def oracle_of(policy: NeuralesePolicy) -> Oracle:
    """The oracle of a policy in memory: its model, config and feedback weights."""
    tok = policy.tokenizer
    return Oracle(
        policy.model,
        dataclasses.asdict(policy.config),
        policy.adapter.state_dict(),
        tok.convert_tokens_to_ids("<thought>"),
        {tok.eos_token_id},
        tok.pad_token_id,
    )


def held_to(
    policy, oracle: Oracle, max_new: int = 6, temperature: float = 0.0, prompts=PROMPTS, seed: int = 0
):
    """The policy's rollout of `prompts` (one batch, left-padded when they differ in length), checked position
    by position against the oracle's run of each prompt alone; returns the rollout, the oracle's steps and
    its log-probs [B, L]."""
    ids, mask = policy.encode(prompts)
    assert prompts != PROMPTS or mask[:, 0].min() == 0, "the batch must contain left padding"
    ro = policy.rollout(ids, mask, max_new, temperature, torch.Generator().manual_seed(seed))
    P = ro.prompt_length
    assert not ro.feedback_mask[:, :P].any() and not ro.action_mask[:, :P].any()  # never on the prompt
    expected, runs = torch.zeros_like(ro.logprobs), []
    for b in range(len(prompts)):
        draws = ro.draw.noise if ro.draw.tokens is None else ro.draw.tokens  # None: nothing drawn
        given = (
            None
            if temperature == 0
            else Given(ro.input_ids[b, P:].tolist(), None if draws is None else draws[b, P:])
        )
        steps = oracle.run(ids[b][mask[b].bool()].tolist(), max_new, temperature, given)
        n, row = len(steps), slice(P, P + len(steps))
        assert ro.input_ids[b, row].tolist() == [s.token for s in steps], b
        assert int(ro.generated_positions[b]) == n, b
        assert ro.attention_mask[b, row].all() and not ro.attention_mask[b, P + n :].any(), b
        assert ro.action_mask[b, row].tolist() == [s.sampled for s in steps], b
        assert ro.feedback_mask[b, P:].tolist() == [s.fed is not None for s in steps] + [False] * (
            ro.input_ids.shape[1] - P - n
        ), b
        for i, s in enumerate(steps):
            if s.fed is not None:
                torch.testing.assert_close(
                    ro.feedback[b, P + i].double(), s.fed, atol=ATOL, rtol=0, msg=f"row {b}, step {i}"
                )
        expected[b, row] = torch.tensor([s.logp for s in steps], dtype=torch.float64)
        runs.append(steps)
    torch.testing.assert_close(ro.logprobs, expected, atol=ATOL, rtol=0)
    return ro, runs, expected


def answer_text(policy, steps: list[Step]) -> str:
    return policy.tokenizer.decode([s.token for s in steps if s.sampled], skip_special_tokens=True)


CASES = {
    "latent": {"mode": "latent"},
    "latent-l-2-identity-latent-only": {
        "mode": "latent",
        "layer": -2,
        "projection": "identity",
        "input": "latent_only",
    },
    "latent-mix-layer-mlp": {"mode": "latent", "layer": "mix", "projection": "mlp"},
    "latent-embedding-space": {"mode": "latent", "space": "embedding", "thought_temperature": 0.7},
    "hybrid": {"mode": "hybrid"},
    "hybrid-l-2-mlp": {"mode": "hybrid", "layer": -2, "projection": "mlp"},
    "hybrid-latent-only": {"mode": "hybrid", "input": "latent_only"},  # the written token is not read back
    "hybrid-mix-space": {"mode": "hybrid", "space": "mix", "mix_init": 0.3, "layer": "mix"},
    "channel": {"mode": "channel", "channel_width": 8, "channel_retention": 0.7},
    "refine-thoughts": {"mode": "refine", "refine_passes": 2},  # fewer passes than thoughts: not latent mode
    "refine-answer": {"mode": "refine", "refine_over": "answer", "refine_passes": 3},
}


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_rollout_is_the_oracles(model_dir, case):
    """Gate open: tokens, fed vectors, log-probs, positions and text are the oracle's; so are the
    log-probs the loss recomputes, for every window."""
    policy = policy_for(model_dir, **CASES[case])
    ro, runs, expected = held_to(policy, oracle_of(policy))
    assert ro.feedback_mask.any()
    for window in (0, 1, "full"):
        torch.testing.assert_close(
            policy.recompute(ro, window).logprobs.detach(),
            expected,
            atol=ATOL,
            rtol=0,
            msg=f"window {window}",
        )
    texts = [answer_text(policy, steps) for steps in runs]
    assert policy.generate(PROMPTS, max_new_tokens=6) == texts
    assert policy.generate(PROMPTS, max_new_tokens=6, batch_size=3) == texts  # other batches, other padding
    got, extras = policy.complete(PROMPTS, 6)
    assert (got, extras["generated_positions"]) == (texts, [len(steps) for steps in runs])


SAMPLED = {
    "latent": {"mode": "latent", "noise_std": 0.2},
    "hybrid": {"mode": "hybrid", "noise_std": 0.2, "layer": -2},
    "channel": {"mode": "channel", "noise_std": 0.2, "channel_width": 8},
    "refine-answer": {
        "mode": "refine",
        "refine_over": "answer",
        "refine_passes": 3,
    },  # sampled in the last pass
    "hybrid-gumbel": {
        "mode": "hybrid",
        "space": "embedding",
        "embedding_weights": "gumbel",
        "thought_temperature": 0.5,
    },
    "latent-multiplex": {
        "mode": "latent",
        "space": "mix",
        "embedding_weights": "multiplex",
        "multiplex_samples": 3,
    },
}


@pytest.mark.parametrize("case", list(SAMPLED))
def test_sampled_rollout_scores_as_the_oracle(model_dir, case):
    """Temperature 0.7 and sampled thoughts: given the sampled tokens and draws, the oracle feeds the same
    vectors, and each log-prob is the token's under softmax(z / 0.7) plus the thought's: log N(f~; f,
    sigma^2 I), the Gumbel density of the perturbed log-probs, or the multiplex tokens' log-probs."""
    policy = policy_for(model_dir, **SAMPLED[case])
    ro, _, expected = held_to(policy, oracle_of(policy), temperature=0.7)
    if policy.config.noise_std:
        assert (ro.draw.noise[ro.feedback_mask].abs().sum(-1) > 0).all()  # real draws, each scored
    torch.testing.assert_close(policy.recompute(ro, 2).logprobs.detach(), expected, atol=ATOL, rtol=0)


@torch.no_grad()
def plain_greedy(model, ids: list[int], max_new: int, eos: int) -> tuple[list[int], list[float]]:
    """The plain model's greedy continuation of `ids` (input_ids, no cache) and its tokens' log-probs."""
    tokens, logps = [], []
    for _ in range(max_new):
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].double(), -1)
        tokens.append(int(logp.argmax()))
        logps.append(float(logp[tokens[-1]]))
        if tokens[-1] == eos:
            break
    return tokens, logps


@pytest.mark.parametrize(
    "settings",
    [{"mode": "latent"}, {"mode": "hybrid"}, {"mode": "channel"}, {"mode": "refine", "refine_passes": 2}],
    ids=lambda s: s["mode"],
)
def test_gate_closed_is_the_plain_model(model_dir, settings):
    """lambda = 0 with every other feedback weight moved: the plain model's greedy tokens (after the K thought
    tokens where the mode has them) and its log-probs within 1e-5, though the thoughts are not zero."""
    policy = policy_for(model_dir, gate=0.0, **settings)
    ids, mask = policy.encode(PROMPTS)
    ro = policy.rollout(ids, mask, 6, 0.0)
    assert ro.feedback[ro.feedback_mask].abs().sum() > 0
    P, tok = ro.prompt_length, policy.tokenizer
    thoughts = [tok.convert_tokens_to_ids("<thought>")] * (
        3 if settings["mode"] in ("latent", "refine") else 0
    )
    for b in range(len(PROMPTS)):
        prompt = ids[b][mask[b].bool()].tolist() + thoughts
        tokens, logps = plain_greedy(policy.model, prompt, 6, tok.eos_token_id)
        n = len(thoughts) + len(tokens)
        assert ro.input_ids[b, P : P + n].tolist() == thoughts + tokens and ro.generated_positions[b] == n, b
        expected = torch.tensor([0.0] * len(thoughts) + logps, dtype=torch.float64)
        torch.testing.assert_close(ro.logprobs[b, P : P + n], expected, atol=ATOL, rtol=0)


def test_eos_ends_an_answer_and_positions_count_thoughts(model_dir, tmp_path, capsys):
    """An answer ends at its first eos (counted, nothing real after it); the others run to the budget.
    generated_positions, and `neuralese eval`'s mean_generated_positions, count the K thoughts too."""
    from neuralese.cli import main
    from neuralese.envs import make_env

    policy = policy_for(model_dir, mode="latent")
    prompts = list(make_env("addition", {"digits": 3}).dataset("test", 8, 0)["prompt"])
    _, runs, _ = held_to(policy, oracle_of(policy), prompts=prompts)
    eos = policy.tokenizer.eos_token_id
    ended = [steps[-1].token == eos for steps in runs]
    assert any(ended) and not all(ended), ended
    assert all(len(steps) == 3 + 6 for steps, e in zip(runs, ended) if not e)
    assert all(sum(s.token == eos for s in steps) == 1 for steps, e in zip(runs, ended) if e)
    policy.save_pretrained(tmp_path / "saved")
    capsys.readouterr()
    main(
        [
            "eval",
            str(tmp_path / "saved"),
            "--env",
            "addition",
            "--env-args",
            "{digits: 3}",
            "--n",
            "8",
            "--max-new-tokens",
            "6",
            "--seed",
            "0",
            "--quiet",
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mean_generated_positions"] == round(sum(map(len, runs)) / len(runs), 3)


@pytest.mark.parametrize("case", ["latent-mix-layer-mlp", "channel"])
def test_exported_folder_read_with_plain_libraries_answers_as_the_policy(model_dir, tmp_path, case):
    """Save, `neuralese export`, then read the folder with transformers and safetensors alone: the oracle
    built from its files, NeuralesePolicy.from_pretrained of it and the policy it came from agree."""
    from neuralese.cli import main

    policy = policy_for(model_dir, **CASES[case])
    policy.save_pretrained(tmp_path / "saved")
    out = tmp_path / "export"
    assert main(["export", str(tmp_path / "saved"), str(out)]) == 0
    tok = AutoTokenizer.from_pretrained(out)
    oracle = Oracle(
        AutoModelForCausalLM.from_pretrained(out),
        json.loads((out / "neuralese.json").read_text())["neuralese"],
        load_file(str(out / "feedback.safetensors")),
        tok.convert_tokens_to_ids("<thought>"),
        {tok.eos_token_id},
        tok.pad_token_id,
    )
    loaded = NeuralesePolicy.from_pretrained(out)
    ro, runs, _ = held_to(loaded, oracle)
    ids, mask = policy.encode(PROMPTS)
    before = policy.rollout(ids, mask, 6, 0.0)
    for field in ("input_ids", "feedback_mask", "feedback", "logprobs"):
        assert torch.equal(getattr(ro, field), getattr(before, field)), field
    assert loaded.generate(PROMPTS, max_new_tokens=6) == [answer_text(loaded, steps) for steps in runs]


SHORT = ["826+182=", "133+517=", "12+3="]  # every own answer ends early; read another's thoughts, one runs on


@pytest.mark.parametrize("mode", ["latent", "hybrid", "channel"])
def test_shuffled_control_reads_only_the_next_prompts_thoughts(model_dir, mode):
    """`neuralese eval --thoughts shuffled`: answer i is written from the thoughts prompt i+1 had in its own
    answer, at every position; where that answer had none (after its end) it reads none, never its own."""
    from neuralese.evaluate import shuffled_answers

    policy = policy_for(model_dir, mode=mode)
    oracle = oracle_of(policy)
    ids, mask = policy.encode(SHORT)
    prompts = [ids[b][mask[b].bool()].tolist() for b in range(len(SHORT))]
    own = [oracle.run(p, 6) for p in prompts]
    budget, zero = (3 if mode == "latent" else 0) + 6, torch.zeros(policy.hidden_size, dtype=torch.float64)
    runs = []
    for b, prompt in enumerate(prompts):
        given = [zero if s.thought is None else s.thought for s in own[(b + 1) % len(prompts)]]
        runs.append(oracle.run(prompt, 6, given=Given(thoughts=given + [zero] * (budget - len(given)))))
    if mode != "latent":  # the case that matters: a shuffled answer outlives every thought it was given
        assert max(map(len, runs)) > max(map(len, own))
    got, extras = shuffled_answers(policy, SHORT, 6)
    assert (got, extras["generated_positions"]) == (
        [answer_text(policy, r) for r in runs],
        [len(r) for r in runs],
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "latent", "projection": "linear"},
        {"mode": "hybrid", "projection": "mlp"},
        {"mode": "hybrid", "layer": "mix"},
    ],
    ids=str,
)
def test_feedback_weights_start_as_the_identity(model_dir, settings):
    """At switch-on `linear` and `mlp` are the identity and the layer mix is uniform: with only the gate
    opened, the fed vectors are those of P = identity."""
    policy = NeuralesePolicy.from_pretrained(model_dir, config=NeuraleseConfig(num_thoughts=3, **settings))
    with torch.no_grad():
        policy.adapter.gate_logit.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    oracle = oracle_of(policy)
    oracle.cfg["projection"] = "identity"
    if settings.get("layer") == "mix":
        oracle.w["layer_logits"] = torch.zeros(policy.model.config.num_hidden_layers, dtype=torch.float64)
    held_to(policy.eval(), oracle)


@pytest.mark.parametrize("mode", ["latent", "hybrid", "channel", "refine"])
def test_one_answer_token(model_dir, mode):
    """max_new_tokens = 1: latent-style modes still think K thoughts; a mode feeding the answer feeds
    nothing (the only answer position is the last, whose output nothing reads)."""
    policy = policy_for(model_dir, mode=mode)
    ro, runs, _ = held_to(policy, oracle_of(policy), max_new=1)
    assert ro.feedback_mask.any() == (mode in ("latent", "refine"))


def test_conversational_prompts_think_after_the_assistant_header(model_dir):
    """A conversation goes through the chat template; the K thoughts come right after the assistant header."""
    policy = policy_for(model_dir, mode="latent")
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    ids, mask = policy.encode(chats)
    tok = policy.tokenizer
    header = tok.encode("assistant:", add_special_tokens=False)
    for b, chat in enumerate(chats):
        expected = list(
            tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
        )
        assert ids[b][mask[b].bool()].tolist() == expected and expected[-len(header) :] == header
    held_to(policy, oracle_of(policy), prompts=chats)


@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_kl_reference_is_the_base_model_without_feedback(model_dir, tmp_path, mode):
    """A LoRA policy with its gate open is the oracle's; its KL reference (feedback off, LoRA adapters off)
    scores the same rollout as the plain base model does, teacher-forced on its tokens, thought tokens
    included, at the sampling temperature."""
    from runs import run_config

    from neuralese.build import build_policy

    policy = build_policy(run_config(model_dir, tmp_path / "run", mode, lora=4), "cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        policy.adapter.gate_logit.normal_(0, 1, generator=g)
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:  # zero at the start: moved, so the adapters change the model
                p.normal_(0, 0.1, generator=g)
    ro, _, own = held_to(policy.eval(), oracle_of(policy), temperature=0.8)
    with policy.feedback_disabled():
        ref = policy.recompute(ro, 0).token_logprobs
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    expected = torch.zeros_like(ref)
    for b in range(ro.input_ids.shape[0]):
        at = ro.attention_mask[b].nonzero().squeeze(-1)  # the row's real positions, unpadded
        seq = ro.input_ids[b, at]
        with torch.no_grad():
            logp = torch.log_softmax(base(input_ids=seq[None]).logits[0, :-1] / 0.8, -1)
        scored = logp.gather(-1, seq[1:, None]).squeeze(-1)  # scored[j]: the token at at[j + 1]
        expected[b, at[1:]] = torch.where(ro.action_mask[b, at[1:]], scored, 0.0)
    torch.testing.assert_close(ref, expected, atol=ATOL, rtol=0)
    assert (ref - own.float()).abs().max() > 1e-2  # the reference is not the policy


FAMILIES = {"qwen2": {}, "gemma2": {"head_dim": 16, "final_logit_softcapping": None}, "gpt2": {"n_inner": 64}}


@pytest.fixture(scope="module", params=list(FAMILIES))
def arch_dir(request, tiny_dir, tmp_path_factory):
    """Tiny models of other families on the same tokenizer: a Qwen2 (biased attention projections), a
    Gemma-2, whose embedding layer scales its table by sqrt(D), so the token embeddings it reads are not
    the table's rows (its final logit soft-capping is off: see the test), and a GPT-2, whose learned
    absolute positions show any left-padded row that does not start at position 0."""
    from transformers import AutoConfig

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    extra = FAMILIES[request.param]
    config = AutoConfig.for_model(
        request.param,
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **extra,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out = tmp_path_factory.mktemp(request.param) / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("case", ["latent", "hybrid-mix-space"])  # mix: the hidden and embedding parts
def test_other_model_families_are_the_oracles(arch_dir, case):
    """n(.) matches the RMS of the token embeddings the model reads, and embedding-space thoughts mix
    them: with a scaled embedding layer those are sqrt(D) times its table. (Soft-capped or scaled final
    logits would make the embedding space's z differ from lm_head(h): not held here.)"""
    policy = policy_for(arch_dir, **CASES[case])
    with torch.no_grad():  # layer -1 is the final post-norm state: the one the output head reads
        out = policy.model(**policy.tokenizer(PROMPTS[:1], return_tensors="pt"), output_hidden_states=True)
        torch.testing.assert_close(policy.model.get_output_embeddings()(out.hidden_states[-1]), out.logits)
    ro, _, expected = held_to(policy, oracle_of(policy))
    torch.testing.assert_close(policy.recompute(ro, "full").logprobs.detach(), expected, atol=ATOL, rtol=0)
