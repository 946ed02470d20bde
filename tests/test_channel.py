"""Channel mode (neuralese.modes.channel) under the neuralese contract, on tiny real models in fp32: the gate
closed is the plain model; recomputed log-probs equal the sampling ones for every window and kind of
thought; gradients equal a literal, cache-free unrolling of the state; a window of k lets gradient
cross at most k recurrence steps (tests/test_policy.py, with hybrid mode's); the state is the recurrence
the docstring writes."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_policy import (
    PROMPTS,
    THOUGHTS,
    grads,
    make_policy,
    plain_logprobs,
    prefix_output,
    rollout,
    same_gradients,
    with_token_logprobs,
)

from neuralese.rollout import Rollout


def channel_policy(tiny_dir, gate=1.0, retention=0.7, **kw):
    """A channel policy with the gate open, the maps moved away from their start and the retention
    spread over (0, 1), so that every part of the recurrence shows in the outputs."""
    policy = make_policy(
        tiny_dir, mode="channel", gate=gate, channel_width=12, channel_retention=retention, **kw
    )
    w = policy.adapter.channel
    with torch.no_grad():
        w.write.weight.add_(0.3 * torch.randn_like(w.write.weight))
        w.read.weight.add_(0.3 * torch.randn_like(w.read.weight))
        w.retention.logit.add_(torch.randn_like(w.retention.logit))
    return policy


def test_gate_closed_equals_plain_model(tiny_dir):
    policy = channel_policy(tiny_dir, gate=0.0)
    ro = rollout(policy)
    rc = policy.recompute(ro, window=0)
    assert torch.equal(rc.token_logprobs[:, 1:].detach(), plain_logprobs(policy, ro))
    assert ro.feedback[ro.feedback_mask].abs().sum() > 0  # the channel was not empty: only the gate hid it
    ids, mask = policy.encode(PROMPTS)  # greedy: HF's own generate
    theirs = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=policy.pad_token_id,
    )
    ours = policy.rollout(ids, mask, 6, temperature=0.0)
    assert policy.decode(ours) == policy.tokenizer.batch_decode(
        theirs[:, ids.shape[1] :], skip_special_tokens=True
    )


def test_state_is_the_recurrence(tiny_dir):
    """s_t = a * s_{t-1} + W_in f_t from zero at the first generated position; the fed vector is W_out s_t."""
    policy = channel_policy(tiny_dir, noise_std=0.2)
    ro = rollout(policy)
    w, fb = policy.adapter.channel, ro.feedback_mask
    a = torch.sigmoid(w.retention.logit)
    plen = ro.prompt_length
    state = torch.zeros(len(PROMPTS), 12)
    for t in range(plen, ro.input_ids.shape[1]):
        state = torch.where(fb[:, t, None], a * state + ro.thoughts[:, t] @ w.write.weight.T, state)
        on = fb[:, t]  # positions that take no feedback (eos, the last one) record no state
        torch.testing.assert_close(ro.extra["state"][:, t][on], state[on])
        torch.testing.assert_close(ro.feedback[:, t][on], (state @ w.read.weight.T)[on])
    # The drawn thoughts are recorded apart from what was fed: they differ, and the noise is on the thought.
    assert not torch.allclose(ro.thoughts[fb], ro.feedback[fb])
    assert policy.adapter.channel.write.out_features == 12


def test_default_width_is_a_quarter_of_the_hidden_size(tiny_dir):
    policy = make_policy(tiny_dir, mode="channel")
    w = policy.adapter.channel
    assert w.write.weight.shape == (policy.hidden_size // 4, policy.hidden_size)
    torch.testing.assert_close(w.retention(), torch.full((policy.hidden_size // 4,), 0.5))


CASES = list(itertools.product(list(THOUGHTS), [0, 1, 2, "full"]))


@pytest.mark.parametrize("thought,window", CASES)
def test_recompute_equals_sampling_logprobs(tiny_dir, thought, window):
    policy = channel_policy(tiny_dir, **THOUGHTS[thought])
    ro = rollout(policy)
    rc = policy.recompute(ro, window)
    torch.testing.assert_close(rc.logprobs, ro.logprobs, atol=1e-5, rtol=0)
    assert rc.logprobs[~ro.loss_mask].abs().max() == 0
    if policy.adapter.sampler != "none":
        assert (rc.thought_logprobs[ro.feedback_mask] != 0).all()


def literal_logprobs(policy, ro: Rollout, window) -> torch.Tensor:
    """Block TBPTT of the state, written out with no KV cache: every output is a fresh forward over its
    prefix. In a block the state restarts from the recorded one before the block and runs on live thoughts
    computed from outputs of the block's own live inputs (the first from constants alone); everything else
    takes its recorded input. Sampled thoughts: live density on live edges, the recorded thought's density
    on constant ones."""
    a, w, table = policy.adapter, policy.adapter.channel, policy.embedding_table
    retention, w_in, w_out = torch.sigmoid(w.retention.logit), w.write.weight, w.read.weight
    bsz, length = ro.input_ids.shape
    plen, fb = ro.prompt_length, ro.feedback_mask
    embeds = policy.embed(ro.input_ids)
    const = torch.where(fb[..., None], a.combine(embeds, ro.feedback), embeds)
    k = length - plen if window == "full" else window
    block_of = {t: (t - plen) // k for t in range(plen, length)} if window != 0 else {}

    def output(t, live_inputs):
        return prefix_output(policy, ro, const, t, live_inputs)

    live, state = {}, {}
    logits = [None] * length
    logp = torch.zeros(bsz, length, dtype=torch.float64)
    for t in range(length - 1):
        b = block_of.get(t)
        inputs = live.setdefault(b, {}) if b is not None else {}
        if b is not None:
            _, src = output(t - 1, inputs if block_of.get(t - 1) == b else {})
            f = a.vector(src, table, ro.draw[:, t])
            s = state.get(b, ro.extra["state"][:, t - 1])
            state[b] = torch.where(fb[:, t, None], retention * s + f @ w_in.T, s)
            inputs[t] = torch.where(fb[:, t, None], a.combine(embeds[:, t], state[b] @ w_out.T), const[:, t])
            logp[:, t] = torch.where(fb[:, t], a.logprob(src, table, ro.draw[:, t], f, live=True), 0.0)
        elif t >= plen:
            _, src = output(t - 1, {})
            d = a.logprob(src, table, ro.draw[:, t], ro.thoughts[:, t], live=False)
            logp[:, t] = torch.where(fb[:, t], d, 0.0)
        logits[t], _ = output(t, inputs)
    return with_token_logprobs(logp, logits, ro)


@pytest.mark.parametrize(
    "thought,window",
    [("hidden", w) for w in (0, 1, 2, "full")]
    + [("hidden-gaussian", 2), ("embedding-gumbel", "full"), ("pause", 2)],
)
def test_gradients_equal_literal_implementation(tiny_dir, thought, window):
    policy = channel_policy(tiny_dir, **THOUGHTS[thought])
    ro = rollout(policy, max_new_tokens=5)
    ours, weights = same_gradients(policy, ro, window, literal_logprobs)
    if window == "full":  # the state's weights learn only through live edges
        zero = grads(policy, policy.recompute(ro, 0).logprobs, weights)
        for name in ("adapter.channel.write.weight", "adapter.channel.retention.logit"):
            assert name not in zero and ours[name].abs().sum() > 0


def test_shuffled_thoughts_rebuild_the_other_prompts_channel(tiny_dir):
    """Forced thoughts are written into the state: a prompt given another's thoughts is fed its channel."""
    policy = channel_policy(tiny_dir)
    ids, mask = policy.encode(PROMPTS)
    own = policy.rollout(ids, mask, 5, 0.0, ignore_eos=True)
    given = own.thoughts[:, own.prompt_length :].roll(-1, 0)
    ro = policy.rollout(ids, mask, 5, 0.0, ignore_eos=True, thoughts=given)
    fb = own.feedback_mask[:, own.prompt_length :]
    torch.testing.assert_close(
        ro.feedback[:, own.prompt_length :][fb], own.feedback[:, own.prompt_length :].roll(-1, 0)[fb]
    )
    assert ro.logprobs[ro.feedback_mask & ~ro.action_mask].abs().sum() == 0


def test_inspect_shows_the_state_and_what_it_keeps(tiny_dir):
    from neuralese.inspector import format_table, inspect_thoughts

    policy = channel_policy(tiny_dir).eval()
    ins = inspect_thoughts(policy, "123+456=", max_new_tokens=6)
    ids, mask = policy.encode(["123+456="])
    ro = policy.rollout(ids, mask, 6, 0.0, torch.Generator().manual_seed(0))
    at = ro.feedback_mask[0].nonzero().squeeze(-1)
    state, a = ro.extra["state"][0], torch.sigmoid(policy.adapter.channel.retention.logit).detach()
    assert [th.columns["|s|"] for th in ins.thoughts] == pytest.approx(
        state[at].norm(dim=-1).tolist(), rel=1e-5
    )
    kept = [float((a * state[t - 1]).norm() / state[t].norm()) for t in at.tolist()]
    assert [th.columns["kept"] for th in ins.thoughts] == pytest.approx(kept, rel=1e-5)
    assert kept[0] == 0 and all(0 < k for k in kept[1:])  # nothing to keep at the first position
    table = format_table(ins)
    assert f"channel: width 12, retention a mean {a.mean():.4f}" in table and "kept" in table


def test_weight_stats_are_the_retention_and_other_modes_have_none(tiny_dir):
    policy = channel_policy(tiny_dir)
    a = torch.sigmoid(policy.adapter.channel.retention.logit).detach()
    stats = policy.mode.weight_stats(policy)
    assert stats == pytest.approx(
        {"a mean": float(a.mean()), "a min": float(a.min()), "a max": float(a.max())}
    )
    hybrid = make_policy(tiny_dir, mode="hybrid")
    assert hybrid.mode.weight_stats(hybrid) == {}


def test_every_input_dimension_gets_gate_gradient_at_switch_on(tiny_dir):
    """W_out starts as orthonormal columns of a random subspace, not the first r coordinates: a zero row of
    W_out and its closed gate would each be the other's only gradient factor, both stuck at zero."""
    policy = make_policy(tiny_dir, mode="channel", gate=0.0, projection="identity")
    w = policy.adapter.channel
    torch.testing.assert_close(w.write.weight @ w.read.weight, torch.eye(w.write.out_features))
    ro = rollout(policy)
    g = grads(policy, policy.recompute(ro, window=4).logprobs, torch.ones(ro.logprobs.shape))
    assert (g["adapter.gate_logit"] != 0).all() and (w.read.weight.abs().sum(-1) > 0).all()
