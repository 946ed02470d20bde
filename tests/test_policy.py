"""The neuralese contract (DESIGN.md, "Neuralese mechanics"), pinned on tiny real models in fp32.

- gate at init: the policy is the pretrained model exactly;
- recomputed log-probs equal the rollout's sampling log-probs for every mode and window;
- gradients equal those of a literal, cache-free implementation of the truncation rule;
- a window of k lets gradient cross at most k feedback edges.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from neuralese.config import NeuraleseConfig
from neuralese.policy import NeuralesePolicy
from neuralese.rollout import Rollout

PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999="]  # different lengths: left padding in the batch
K = 4


def make_policy(tiny_dir, mode="latent", layer=-1, projection="linear", gate=1.0, seed=0, **kw):
    cfg = NeuraleseConfig(mode=mode, num_thoughts=K, layer=layer, projection=projection, **kw)
    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        if gate:  # an open gate, so feedback changes the outputs
            policy.adapter.gate_logit.normal_(0, gate)
        if projection == "linear":  # a projection away from the identity
            policy.adapter.proj.weight.add_(0.3 * torch.randn_like(policy.adapter.proj.weight))
    return policy


def rollout(policy, prompts=PROMPTS, max_new_tokens=6, temperature=1.0, seed=0) -> Rollout:
    ids, mask = policy.encode(prompts)
    return policy.rollout(ids, mask, max_new_tokens, temperature, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- switch-on


def plain_logprobs(policy, ro: Rollout, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L-1] the plain model's log-probs of the rollout's tokens at positions 1.., teacher-forced on
    `inputs` (default: the tokens themselves), 0 where no token was sampled."""
    with torch.no_grad():
        plain = policy.model(
            input_ids=ro.input_ids if inputs is None else inputs,
            attention_mask=ro.attention_mask,
            position_ids=ro.position_ids,
        )
    logp = (
        torch.log_softmax(plain.logits[:, :-1].float(), -1).gather(-1, ro.input_ids[:, 1:, None]).squeeze(-1)
    )
    return torch.where(ro.action_mask[:, 1:], logp, 0.0)


@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_gate_at_init_equals_plain_model(tiny_dir, mode):
    policy = make_policy(tiny_dir, mode=mode, gate=0.0)
    ro = rollout(policy)
    assert ro.feedback_mask.any()
    rc = policy.recompute(ro, window=0, need_hidden=True)
    expected = plain_logprobs(policy, ro)
    assert torch.equal(rc.token_logprobs[:, 1:].detach(), expected)
    # The feedback vectors themselves were not zero: only the gate hid them.
    assert ro.feedback[ro.feedback_mask].abs().sum() > 0


def test_hybrid_greedy_with_closed_gate_equals_hf_generate(tiny_dir):
    policy = make_policy(tiny_dir, mode="hybrid", gate=0.0)
    ids, mask = policy.encode(PROMPTS)
    ours = policy.rollout(ids, mask, 6, temperature=0.0)
    theirs = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=policy.pad_token_id,
    )
    ours_text = policy.decode(ours)
    theirs_text = policy.tokenizer.batch_decode(theirs[:, ids.shape[1] :], skip_special_tokens=True)
    assert ours_text == theirs_text


# ----------------------------------------------------------------------------- consistency

# Noise on the scale of the feedback vector itself (the test model's embedding RMS is about 0.18).
# Much smaller noise makes the Gaussian log-density ill-conditioned in float32: it amplifies the
# ~1e-6 relative difference between incremental and parallel hidden states by |eps| / sigma.
SIGMA = 0.2
# What a thought is and what makes it random (neuralese.thoughts): NeuraleseConfig fields per case.
THOUGHTS = {
    "hidden": {},
    "hidden-gaussian": {"noise_std": SIGMA},
    "embedding": {"space": "embedding", "thought_temperature": 0.7},
    "embedding-gumbel": {"space": "embedding", "embedding_weights": "gumbel", "thought_temperature": 0.5},
    "embedding-multiplex": {"space": "embedding", "embedding_weights": "multiplex", "multiplex_samples": 3},
    "mix-gumbel": {"space": "mix", "embedding_weights": "gumbel", "mix_init": 0.5, "layer": -2},
    "pause": {"space": "pause"},
}
CASES = list(itertools.product(["latent", "hybrid"], list(THOUGHTS), [0, 1, 2, "full"]))


@pytest.mark.parametrize("mode,thought,window", CASES)
def test_recompute_equals_sampling_logprobs(tiny_dir, mode, thought, window):
    policy = make_policy(tiny_dir, mode=mode, **THOUGHTS[thought])
    ro = rollout(policy)
    assert ro.attention_mask[:, 0].min() == 0, "the batch must contain left padding"
    rc = policy.recompute(ro, window)
    assert ro.loss_mask.sum() > 0
    torch.testing.assert_close(rc.logprobs, ro.logprobs, atol=1e-5, rtol=0)
    # Positions outside the loss mask carry nothing.
    assert rc.logprobs[~ro.loss_mask].abs().max() == 0
    # A sampled thought's log-prob is part of the policy's, at every feedback position; else there is none.
    if policy.adapter.sampler != "none":
        assert (rc.thought_logprobs[ro.feedback_mask] != 0).all()
    else:
        assert (rc.thought_logprobs == 0).all()


@pytest.mark.parametrize("layer,projection", [("mix", "mlp"), (-2, "identity")])
def test_recompute_other_layers_and_projections(tiny_dir, layer, projection):
    for mode in ("latent", "hybrid"):
        policy = make_policy(tiny_dir, mode=mode, layer=layer, projection=projection, noise_std=SIGMA)
        ro = rollout(policy)
        torch.testing.assert_close(policy.recompute(ro, 2).logprobs, ro.logprobs, atol=1e-5, rtol=0)


def test_noise_logprob_is_the_gaussian_density(tiny_dir):
    policy = make_policy(tiny_dir, mode="latent", noise_std=0.1)
    ro = rollout(policy)
    fb = ro.feedback_mask
    dist = torch.distributions.Normal(
        torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
    )
    expected = dist.log_prob(0.1 * ro.draw.noise[fb].double()).sum(-1)  # density of sigma * eps
    thought_logp = ro.logprobs[fb & ~ro.action_mask]
    torch.testing.assert_close(thought_logp.double(), expected, atol=1e-9, rtol=0)


def test_gumbel_logprob_is_the_density_of_the_perturbed_logits(tiny_dir):
    """y = log softmax(z) + g with g ~ Gumbel(0, 1) per entry: log p(y) = sum_i log Gumbel(y_i - log pi_i)."""
    policy = make_policy(tiny_dir, mode="latent", **THOUGHTS["embedding-gumbel"])
    ro = rollout(policy)
    fb = ro.feedback_mask & ~ro.action_mask
    g = ro.draw.noise[fb].double()  # [n, V]
    expected = torch.distributions.Gumbel(torch.tensor(0.0, dtype=torch.float64), 1.0).log_prob(g).sum(-1)
    torch.testing.assert_close(ro.logprobs[fb], expected, atol=1e-9, rtol=0)
    # The fed thought is the Gumbel-softmax of the perturbed log-probs, mixing the token embeddings.
    w = torch.softmax(ro.draw.perturbed[fb] / 0.5, -1)
    torch.testing.assert_close(ro.feedback[fb], policy.adapter.proj(w @ policy.embedding_table))


def test_multiplex_thought_is_the_mean_of_its_tokens(tiny_dir):
    policy = make_policy(tiny_dir, mode="latent", gate=0.0, **THOUGHTS["embedding-multiplex"])
    with torch.no_grad():  # the identity projection: the fed vector is the mean embedding itself
        policy.adapter.proj.weight.copy_(torch.eye(policy.hidden_size))
    ro = rollout(policy)
    fb = ro.feedback_mask & ~ro.action_mask
    tokens = ro.draw.tokens[fb]  # [n, 3]
    torch.testing.assert_close(ro.feedback[fb], policy.embedding_table[tokens].mean(1))
    # Its log-prob is the sum of the tokens' log-probs under the next-token distribution.
    assert (ro.logprobs[fb] < 0).all()


def test_embedding_thought_at_low_temperature_is_the_greedy_token(tiny_dir):
    """softmax(z / tau) @ E -> E[argmax z]: with latent_only input, latent mode is then token CoT."""
    policy = make_policy(
        tiny_dir,
        mode="latent",
        gate=0.0,
        space="embedding",
        thought_temperature=1e-4,
        input="latent_only",
        projection="identity",
    )
    ro = rollout(policy, temperature=0.0)
    plain = NeuralesePolicy.from_pretrained(tiny_dir)  # token mode: write the K tokens greedily instead
    ids, mask = plain.encode(PROMPTS)
    written = plain.rollout(ids, mask, K + 6, temperature=0.0, ignore_eos=True)
    plen = ro.prompt_length
    greedy_tokens = written.input_ids[:, plen : plen + K]  # what token CoT writes at those positions
    # The thought fed into position plen + t is the embedding of the token greedy CoT writes there.
    fed = ro.feedback[:, plen : plen + K]
    torch.testing.assert_close(fed, policy.embedding_table[greedy_tokens], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- gradients


def literal_logprobs(policy: NeuralesePolicy, ro: Rollout, window) -> torch.Tensor:
    """The truncation rule written out with no KV cache: every output is a fresh forward over its prefix.

    Live positions (those in a block) take inputs computed from the previous position's output;
    when computing an output, only the live positions of its own block use live inputs and every
    other position its recorded constant. The first edge of a block starts from an output computed
    from constants alone. A sampled thought's log-prob: on a live edge the density of its recorded
    draw (multiplex: its tokens' log-probs), on a constant edge the density of the recorded thought.
    """
    a, cfg, table = policy.adapter, policy.config, policy.embedding_table
    bsz, length = ro.input_ids.shape
    plen = ro.prompt_length
    embeds = policy.embed(ro.input_ids)
    fb = ro.feedback_mask
    const = torch.where(fb[..., None], a.combine(embeds, ro.feedback), embeds)
    # Blocks, written independently of neuralese.recompute.live_blocks.
    if window == 0:
        block_of = {}
    elif cfg.mode == "latent":
        k = K if window == "full" else window
        block_of = {t: 0 for t in range(plen + K - k, plen + K)}
        block_of.update({t: 0 for t in range(plen + K, length)})  # the answer reads the live block
    else:
        k = length - plen if window == "full" else window
        block_of = {t: (t - plen) // k for t in range(plen, length)}

    def output(t, live_inputs):
        return prefix_output(policy, ro, const, t, live_inputs)

    def thought_position(t):
        return cfg.mode == "hybrid" or t < plen + K

    live: dict[int, dict[int, torch.Tensor]] = {}  # block -> {position: live input}
    logits = [None] * length
    logp = torch.zeros(bsz, length, dtype=torch.float64)
    for t in range(length - 1):
        b = block_of.get(t)
        inputs = live.setdefault(b, {}) if b is not None else {}
        if b is not None and thought_position(t):
            src_view = inputs if block_of.get(t - 1) == b else {}
            _, src = output(t - 1, src_view)
            vec = a.vector(src, table, ro.draw[:, t])
            inputs[t] = torch.where(fb[:, t, None], a.combine(embeds[:, t], vec), const[:, t])
            d = a.logprob(src, table, ro.draw[:, t], vec, live=True)
            logp[:, t] = torch.where(fb[:, t], d, 0.0)
        elif t >= plen:
            _, src = output(t - 1, {})
            d = a.logprob(src, table, ro.draw[:, t], ro.feedback[:, t], live=False)
            logp[:, t] = torch.where(fb[:, t], d, 0.0)
        logits[t], _ = output(t, inputs)
    return with_token_logprobs(logp, logits, ro)


def prefix_output(policy, ro: Rollout, const: torch.Tensor, t: int, live_inputs: dict):
    """A fresh forward over positions [0, t] with no cache: recorded inputs `const` [B, L, D], replaced
    by `live_inputs` {position: [B, D]} where given. Returns the logits [B, V] and thought source at t."""
    x = const.clone()
    for u, v in live_inputs.items():
        if u <= t:
            x[:, u] = v
    out = policy.model(
        inputs_embeds=x[:, : t + 1],
        attention_mask=ro.attention_mask[:, : t + 1],
        position_ids=ro.position_ids[:, : t + 1],
        output_hidden_states=True,
    )
    return out.logits[:, -1], policy.thought_source(out, -1)


def with_token_logprobs(thought_logp: torch.Tensor, logits: list, ro: Rollout) -> torch.Tensor:
    """A literal implementation's per-position log-probs: its thoughts' (none unless sampled) plus the
    sampled tokens' under `logits[t - 1]`, one [B, V] tensor per position."""
    logp = thought_logp if ro.sampler != "none" else torch.zeros_like(thought_logp)
    for t in range(1, ro.input_ids.shape[1]):
        lp = (
            torch.log_softmax(logits[t - 1] / ro.temperature, -1)
            .gather(-1, ro.input_ids[:, t, None])
            .squeeze(-1)
        )
        logp[:, t] = logp[:, t] + torch.where(ro.action_mask[:, t], lp, 0.0)
    return logp


def grads(policy, logp, weights):
    policy.zero_grad(set_to_none=True)
    (logp * weights).sum().backward()
    return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


def same_gradients(policy, ro: Rollout, window, literal) -> tuple[dict, torch.Tensor]:
    """Gradients of a weighted sum of the recomputed log-probs equal those of `literal(policy, ro, window)`;
    returns ours and the weights."""
    weights = torch.rand(ro.logprobs.shape, generator=torch.Generator().manual_seed(1))
    ours = grads(policy, policy.recompute(ro, window).logprobs, weights)
    ref = grads(policy, literal(policy, ro, window), weights)
    assert ours.keys() == ref.keys()
    for name in ref:
        # Normwise: the noise density's score function makes some gradients large (|eps| / sigma), and
        # float32 rounding through it reaches about 5e-6 in an element (Gumbel densities, full window).
        scale = ref[name].abs().max().item()
        torch.testing.assert_close(
            ours[name],
            ref[name],
            atol=1e-5 * max(scale, 1.0),
            rtol=1e-4,
            msg=lambda m, name=name: f"{name}: {m}",
        )
    return ours, weights


GRADIENT_CASES = [
    (mode, thought, window)
    for mode, thought, window in CASES
    if thought == "hidden"
    or window in (0, "full")
    or (thought in ("hidden-gaussian", "embedding-gumbel") and window == 2)
]


@pytest.mark.parametrize("mode,thought,window", GRADIENT_CASES)
def test_gradients_equal_literal_implementation(tiny_dir, mode, thought, window):
    policy = make_policy(tiny_dir, mode=mode, **THOUGHTS[thought])
    ro = rollout(policy, max_new_tokens=5)
    ours, weights = same_gradients(policy, ro, window, literal_logprobs)
    # And the window matters: full BPTT and window 0 differ on the feedback adapter.
    if window == "full" and thought != "pause":
        zero = grads(policy, policy.recompute(ro, 0).logprobs, weights)
        if policy.adapter.sampler == "none":  # with constants only, nothing reaches the projection
            assert "adapter.proj.weight" not in zero and ours["adapter.proj.weight"].abs().sum() > 0
        else:  # the thought density's score function reaches the weights either way, but not alike
            assert any(n not in zero or not torch.allclose(zero[n], ours[n], atol=1e-6) for n in ours)


def edge_gradients(policy, ro, window, loss_positions):
    """|d loss / d probe| per position: the gradient reaching each feedback edge's source."""
    probe = torch.zeros(*ro.input_ids.shape, policy.hidden_size, requires_grad=True)
    rc = policy.recompute(ro, window, probe=probe)
    rc.logprobs[:, loss_positions].sum().backward()
    grad = probe.grad if probe.grad is not None else torch.zeros_like(probe)  # None: no path at all
    return grad.abs().sum(-1).sum(0)  # [L]


@pytest.mark.parametrize("window", [0, 1, 2, 3, "full"])
def test_latent_window_bounds_the_edges_that_carry_gradient(tiny_dir, window):
    policy = make_policy(tiny_dir, mode="latent")
    ro = rollout(policy, temperature=0.0)
    plen = ro.prompt_length
    answer = list(range(plen + K, ro.input_ids.shape[1]))
    g = edge_gradients(policy, ro, window, answer)
    k = K if window == "full" else window
    # Edge into thought t has its source at t-1; the last k thoughts are plen+K-k .. plen+K-1.
    carrying = set(range(plen + K - k - 1, plen + K - 1))
    nonzero = {int(i) for i in torch.nonzero(g > 0)}
    assert nonzero == carrying


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("mode", ["hybrid", "channel"])  # channel: the state entering a block is a constant
def test_hybrid_window_bounds_the_edges_that_carry_gradient(tiny_dir, window, mode):
    policy = make_policy(tiny_dir, mode=mode)
    ro = rollout(policy, prompts=["123+456="], max_new_tokens=8, temperature=0.0)
    plen, length = ro.prompt_length, ro.input_ids.shape[1]
    for t in range(plen + 1, length):  # loss on the token at t, scored by the logits at t-1
        g = edge_gradients(policy, ro, window, [t])
        block_start = plen + ((t - 1 - plen) // window) * window
        # Edges into block_start .. t-1; their sources are block_start-1 .. t-2.
        expected = set(range(block_start - 1, t - 1))
        assert {int(i) for i in torch.nonzero(g > 0)} == expected, t
        assert len(expected) <= window
        if (t - plen) % window == 0:
            assert len(expected) == window  # a loss at a block's end sees exactly k edges


@pytest.mark.parametrize("mode", ["hybrid", "channel"])
def test_full_window_reaches_the_first_edge(tiny_dir, mode):
    policy = make_policy(tiny_dir, mode=mode)
    ro = rollout(policy, prompts=["123+456="], max_new_tokens=8, temperature=0.0)
    g = edge_gradients(policy, ro, "full", [ro.input_ids.shape[1] - 1])
    assert g[ro.prompt_length - 1] > 0  # the edge from the prompt's last position


@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_gate_gets_gradient_at_init(tiny_dir, mode):
    policy = make_policy(tiny_dir, mode=mode, gate=0.0)
    assert policy.adapter.gate_logit.abs().max() == 0
    ro = rollout(policy)
    for window in (0, "full"):
        policy.zero_grad(set_to_none=True)
        policy.recompute(ro, window).logprobs.sum().backward()
        assert policy.adapter.gate_logit.grad.abs().sum() > 0


def test_rollout_record_is_consistent(tiny_dir):
    policy = make_policy(tiny_dir, mode="latent")
    ro = rollout(policy, temperature=1.0)
    plen = ro.prompt_length
    # K forced thought tokens, then answers; thoughts are feedback positions without a sampled token.
    assert (ro.input_ids[:, plen : plen + K] == policy.thought_token_id).all()
    assert (ro.num_thoughts == K).all()
    assert not ro.action_mask[:, : plen + K].any() and ro.feedback_mask[:, plen : plen + K].all()
    # After eos nothing is real.
    eos = policy.tokenizer.eos_token_id
    for row, mask in zip(ro.input_ids, ro.attention_mask):
        hits = (row[plen:] == eos).nonzero()
        if len(hits):
            assert mask[plen + int(hits[0]) + 1 :].sum() == 0
    assert ro.select(torch.tensor([1, 2])).input_ids.shape[0] == 2


# ----------------------------------------------------------------------------- library API


@pytest.fixture
def library_warnings():
    """What transformers warns while the test runs: Python warnings (its deprecated-argument
    FutureWarning) and its logger's messages (which do not propagate to pytest's; `warning_once`
    is reset so a message logged earlier in the session shows again)."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    seen: list[str] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    root = hf_logging.get_logger()
    root.warning_once.cache_clear()
    root.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: seen + [str(w.message) for w in caught]
    root.removeHandler(handler)


@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_rollout_and_recompute_use_the_current_cache_argument(tiny_dir, library_warnings, mode):
    from transformers import DynamicCache

    from neuralese.models import CACHE

    policy = make_policy(tiny_dir, mode=mode)
    policy.recompute(rollout(policy), window=2)  # live blocks run over a KV cache
    assert not [m for m in library_warnings() if "deprecated" in m], library_warnings()
    if CACHE == "cache":  # the check can see the warning: the old name still draws it
        ids, mask = policy.encode(PROMPTS[:1])
        policy.model(
            input_ids=ids, attention_mask=mask, past_key_values=DynamicCache(config=policy.model.config)
        )
        assert any("past_key_values" in m and "deprecated" in m for m in library_warnings())


@pytest.mark.parametrize("thought", ["hidden-gaussian", "embedding-gumbel", "embedding-multiplex"])
def test_greedy_decoding_takes_each_thoughts_most_likely_value(tiny_dir, thought):
    """Temperature 0 decodes tokens greedily and thoughts at their mode: the same answers for any seed,
    and the thoughts of the deterministic sampler (no noise; multiplex: the top token every time)."""
    policy = make_policy(tiny_dir, mode="latent", **THOUGHTS[thought])
    runs = [rollout(policy, temperature=0.0, seed=s) for s in (0, 1)]
    assert torch.equal(runs[0].feedback, runs[1].feedback) and torch.equal(
        runs[0].input_ids, runs[1].input_ids
    )
    fb = runs[0].feedback_mask
    if thought == "embedding-multiplex":
        tokens = runs[0].draw.tokens[fb]
        assert (tokens == tokens[:, :1]).all()  # one token, m times
    else:
        assert runs[0].draw.noise[fb].abs().max() == 0
    sampled = rollout(policy, temperature=1.0, seed=0)
    assert not torch.equal(sampled.feedback[sampled.feedback_mask], runs[0].feedback[fb])
