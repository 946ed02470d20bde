"""Refine mode (neuralese.modes.refine) under the neuralese contract, on tiny real models in fp32: with as many
passes as positions it is the sequential mode; the gate closed is the plain model (pass by pass);
recomputed log-probs equal the sampling ones for every window and kind of thought, over thoughts and
over the answer; gradients equal a literal, cache-free implementation of the passes; a window of k
lets gradient reach exactly the last k passes' edges."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_policy import PROMPTS, THOUGHTS, K, grads, make_policy, plain_logprobs, rollout, same_gradients

from neuralese.inspector import format_table, inspect_thoughts
from neuralese.rollout import Rollout

T = 3


def refine_policy(tiny_dir, over="thoughts", passes=T, **kw):
    return make_policy(tiny_dir, mode="refine", refine_over=over, refine_passes=passes, **kw)


def same_record(a: Rollout, b: Rollout):
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.attention_mask, b.attention_mask)
    assert torch.equal(a.feedback_mask, b.feedback_mask) and torch.equal(a.action_mask, b.action_mask)
    torch.testing.assert_close(a.feedback, b.feedback, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- equal to the sequential modes


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_as_many_passes_as_thoughts_is_latent_mode(tiny_dir, temperature):
    latent, refine = make_policy(tiny_dir, mode="latent"), refine_policy(tiny_dir, passes=K)
    refine.load_state_dict(latent.state_dict())
    same_record(rollout(refine, temperature=temperature), rollout(latent, temperature=temperature))
    # Fewer passes than thoughts is not: the last thoughts have not settled.
    fewer = refine_policy(tiny_dir, passes=K - 1)
    fewer.load_state_dict(latent.state_dict())
    ours, theirs = rollout(fewer, temperature=0.0), rollout(latent, temperature=0.0)
    plen = ours.prompt_length
    torch.testing.assert_close(
        ours.feedback[:, : plen + K - 1], theirs.feedback[:, : plen + K - 1], atol=1e-5, rtol=0
    )
    assert (ours.feedback[:, plen + K - 1] - theirs.feedback[:, plen + K - 1]).abs().max() > 1e-3


def test_as_many_passes_as_positions_is_hybrid_mode_at_temperature_0(tiny_dir):
    n = 6
    hybrid, refine = make_policy(tiny_dir, mode="hybrid"), refine_policy(tiny_dir, over="answer", passes=n)
    refine.load_state_dict(hybrid.state_dict())
    ids, mask = hybrid.encode(PROMPTS)
    ours, theirs = (p.rollout(ids, mask, n, 0.0, ignore_eos=True) for p in (refine, hybrid))
    same_record(ours, theirs)
    # With eos: the same answers; refine fills every position in each pass, and pads after eos.
    ours, theirs = (p.rollout(ids, mask, n, 0.0) for p in (refine, hybrid))
    assert refine.decode(ours) == hybrid.decode(theirs)
    width = theirs.input_ids.shape[1]
    assert torch.equal(ours.feedback_mask[:, :width], theirs.feedback_mask)
    assert ours.attention_mask[:, width:].sum() == 0


# ----------------------------------------------------------------------------- switch-on


def test_gate_closed_over_thoughts_is_the_plain_model(tiny_dir):
    policy = refine_policy(tiny_dir, gate=0.0)
    ro = rollout(policy)
    rc = policy.recompute(ro, window=0)
    # The passes run over the prompt's cache, the plain model in one forward: equal up to float rounding.
    torch.testing.assert_close(
        rc.token_logprobs[:, 1:].detach(), plain_logprobs(policy, ro), atol=1e-5, rtol=0
    )
    assert ro.extra["pass_feedback"][ro.feedback_mask].abs().sum() > 0  # only the gate hid the thoughts


def test_gate_closed_over_the_answer_is_jacobi_decoding_of_the_plain_model(tiny_dir):
    """Each pass is the plain model teacher-forced on that pass's draft; with as many passes as
    positions the greedy answer is the plain model's own."""
    policy = refine_policy(tiny_dir, over="answer", gate=0.0)
    ro = rollout(policy)
    rc = policy.recompute(ro, window=0)
    draft = policy.mode.final_tokens(ro)  # the last pass's inputs
    assert not torch.equal(draft, ro.input_ids)  # the sampled answer is not its own draft
    torch.testing.assert_close(
        rc.token_logprobs[:, 1:].detach(), plain_logprobs(policy, ro, draft), atol=1e-5, rtol=0
    )
    n = 6
    converged = refine_policy(tiny_dir, over="answer", passes=n, gate=0.0)
    ids, mask = converged.encode(PROMPTS)
    ours = converged.rollout(ids, mask, n, temperature=0.0)
    theirs = converged.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=converged.pad_token_id,
    )
    assert converged.decode(ours) == converged.tokenizer.batch_decode(
        theirs[:, ids.shape[1] :], skip_special_tokens=True
    )


# ----------------------------------------------------------------------------- consistency

CASES = list(itertools.product(["thoughts", "answer"], list(THOUGHTS), [0, 1, 2, "full"]))


@pytest.mark.parametrize("over,thought,window", CASES)
def test_recompute_equals_sampling_logprobs(tiny_dir, over, thought, window):
    policy = refine_policy(tiny_dir, over=over, **THOUGHTS[thought])
    ro = rollout(policy)
    assert ro.attention_mask[:, 0].min() == 0, "the batch must contain left padding"
    rc = policy.recompute(ro, window)
    torch.testing.assert_close(rc.logprobs, ro.logprobs, atol=1e-5, rtol=0)
    assert rc.logprobs[~ro.loss_mask].abs().max() == 0
    if policy.adapter.sampler != "none":  # every pass's thought is an action, with its density
        assert (rc.thought_logprobs[ro.feedback_mask] != 0).all()


def test_thoughts_of_every_pass_are_recorded(tiny_dir):
    policy = refine_policy(tiny_dir, noise_std=0.2)
    ro = rollout(policy)
    plen, fed = ro.prompt_length, ro.extra["pass_fed"]
    # Pass 1 feeds only the first thought (from the prompt), the last pass every thought, the passes
    # between all but the last (whose state no later pass reads).
    assert (
        fed[:, plen, 0].all()
        and not fed[:, plen + 1 : plen + K, 0].any()
        and fed[:, plen : plen + K, -1].all()
    )
    assert fed[:, plen : plen + K - 1, 1:].all() and not fed[:, plen + K - 1, :-1].any()
    torch.testing.assert_close(
        ro.feedback[:, plen : plen + K], ro.extra["pass_feedback"][:, plen : plen + K, -1]
    )
    assert ro.draw.noise.shape == (*ro.input_ids.shape, T, policy.hidden_size)
    expected = -0.5 * ro.draw.noise.double().pow(2).sum(-1) - policy.hidden_size * (
        torch.log(torch.tensor(0.2, dtype=torch.float64))
        + 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))
    )  # [B, L, T]: each pass's Gaussian density
    torch.testing.assert_close(ro.logprobs[:, plen : plen + K], (expected * fed).sum(-1)[:, plen : plen + K])


@pytest.mark.parametrize("stage_thoughts", [0, 1, 3])
def test_curriculum_stages_change_the_thoughts(tiny_dir, stage_thoughts):
    policy = refine_policy(tiny_dir, noise_std=0.2)
    policy.config.num_thoughts = stage_thoughts  # what the trainer's curriculum does between stages
    ro = rollout(policy)
    assert (ro.num_thoughts == stage_thoughts).all()
    torch.testing.assert_close(policy.recompute(ro, 2).logprobs, ro.logprobs, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- gradients


def literal_logprobs(policy, ro: Rollout, window, probe=None) -> torch.Tensor:
    """The passes written out with no KV cache: every pass is a fresh forward over the whole sequence.
    The last k passes take live thoughts rebuilt from the previous pass's states (the first of them from
    a pass computed with recorded inputs); earlier passes take their recorded thoughts. Token log-probs
    come from the last pass; a thought's log-prob is its live density, or the recorded thought's density
    against the (constant) previous pass."""
    a_, table, cfg = policy.adapter, policy.embedding_table, policy.config
    bsz, length = ro.input_ids.shape
    a = ro.prompt_length
    b = a + cfg.num_thoughts if cfg.refine_over == "thoughts" else length
    k = T if window == "full" else window
    fed = ro.extra["pass_fed"]  # [B, L, T]

    def inputs(tau, vec):  # the whole sequence's inputs in pass tau, with thoughts `vec` [B, L, D]
        ids = ro.input_ids.clone()
        if cfg.refine_over == "answer":
            ids[:, a:b] = ro.extra["pass_tokens"][:, a:b, tau - 1]
        e = policy.embed(ids)
        return torch.where(fed[:, :, tau - 1, None], a_.combine(e, vec), e)

    def forward(x):
        return policy.model(
            inputs_embeds=x,
            attention_mask=ro.attention_mask,
            position_ids=ro.position_ids,
            output_hidden_states=True,
        )

    logp = torch.zeros(bsz, length, dtype=torch.float64)
    prev = forward(inputs(1, ro.extra["pass_feedback"][:, :, 0]))  # its prompt positions are every pass's
    for tau in range(1, T + 1):
        live = tau > T - k
        p = None if probe is None else probe[:, tau - 1, : length - 1]
        src = policy.thought_source(prev, slice(0, length - 1), p)  # src[:, u - 1] feeds position u
        shifted = lambda t: torch.cat([t[:, :1] * 0, t], 1)  # noqa: E731  (position u reads u - 1)
        src = type(src)(*(None if t is None else shifted(t) for t in (src.hidden, src.logits)))
        draw = ro.draw[:, :, tau - 1]
        recorded = ro.extra["pass_feedback"][:, :, tau - 1]
        vec = a_.vector(src, table, draw) if live else recorded
        dens = a_.logprob(src, table, draw, vec, live=live)
        logp = logp + torch.where(fed[:, :, tau - 1], dens, 0.0)
        prev = forward(inputs(tau, vec))
    if ro.sampler == "none":
        logp.zero_()
    lp = (
        torch.log_softmax(prev.logits[:, :-1] / ro.temperature, -1)
        .gather(-1, ro.input_ids[:, 1:, None])
        .squeeze(-1)
    )
    return logp + torch.cat([logp[:, :1] * 0, torch.where(ro.action_mask[:, 1:], lp, 0.0)], 1)


GRADIENT_CASES = [(over, "hidden", w) for over in ("thoughts", "answer") for w in (0, 1, 2, "full")] + [
    ("thoughts", "hidden-gaussian", 1),
    ("answer", "embedding-gumbel", 2),
    ("thoughts", "embedding-multiplex", "full"),
    ("answer", "mix-gumbel", 1),
    ("thoughts", "pause", 2),
]


@pytest.mark.parametrize("over,thought,window", GRADIENT_CASES)
def test_gradients_equal_literal_implementation(tiny_dir, over, thought, window):
    policy = refine_policy(tiny_dir, over=over, **THOUGHTS[thought])
    ro = rollout(policy, max_new_tokens=5)
    ours, weights = same_gradients(policy, ro, window, literal_logprobs)
    if window == "full" and thought == "hidden":  # recorded thoughts only: nothing reaches the projection
        zero = grads(policy, policy.recompute(ro, 0).logprobs, weights)
        assert "adapter.proj.weight" not in zero and ours["adapter.proj.weight"].abs().sum() > 0


@pytest.mark.parametrize("over,window", itertools.product(["thoughts", "answer"], [0, 1, 2, "full"]))
def test_window_bounds_the_passes_that_carry_gradient(tiny_dir, over, window):
    """A probe per pass on the states each pass's thoughts are read from: with window k, gradient reaches
    the edges into the last k passes, every one of them, and no other."""
    policy = refine_policy(tiny_dir, over=over)
    ro = rollout(policy, prompts=["123+456="], max_new_tokens=8, temperature=0.0)
    probe = torch.zeros(1, T, *ro.input_ids.shape[1:], policy.hidden_size, requires_grad=True)
    rc = policy.recompute(ro, window, probe=probe)
    rc.logprobs.sum().backward()
    got = (
        set()
        if probe.grad is None
        else {tuple(i) for i in torch.nonzero(probe.grad.abs().sum(-1)[0] > 0).tolist()}
    )
    k = T if window == "full" else window
    fed = ro.extra["pass_fed"][0]  # [L, T]
    expected = {(tau, u - 1) for tau in range(T - k, T) for u in fed[:, tau].nonzero().squeeze(-1).tolist()}
    assert got == expected
    # The same through the literal implementation, whose edges are written out.
    probe.grad = None
    literal_logprobs(policy, ro, window, probe=probe).sum().backward()
    assert (
        set()
        if probe.grad is None
        else {tuple(i) for i in torch.nonzero(probe.grad.abs().sum(-1)[0] > 0).tolist()}
    ) == expected


# ----------------------------------------------------------------------------- controls and inspection


@pytest.mark.parametrize("over", ["thoughts", "answer"])
def test_shuffled_thoughts_are_fed_in_every_pass(tiny_dir, over):
    policy = refine_policy(tiny_dir, over=over)
    ids, mask = policy.encode(PROMPTS)
    own = policy.rollout(ids, mask, 5, 0.0, ignore_eos=True)
    given = own.thoughts[:, own.prompt_length :].roll(-1, 0)
    ro = policy.rollout(ids, mask, 5, 0.0, ignore_eos=True, thoughts=given)
    plen, fed = ro.prompt_length, ro.extra["pass_fed"]
    for tau in range(T):
        on = fed[:, plen:, tau]
        torch.testing.assert_close(ro.extra["pass_feedback"][:, plen:, tau][on], given[:, : on.shape[1]][on])
    assert ro.logprobs[ro.feedback_mask & ~ro.action_mask].abs().sum() == 0


def test_inspect_shows_the_change_between_passes(tiny_dir):
    policy = refine_policy(tiny_dir).eval()
    ins = inspect_thoughts(policy, "123+456=", max_new_tokens=6)
    ro = policy.rollout(*policy.encode(["123+456="]), 6, 0.0, torch.Generator().manual_seed(0))
    vecs = ro.extra["pass_feedback"][0, ro.prompt_length : ro.prompt_length + K]  # [K, T, D]
    change = ((vecs[:, -1] - vecs[:, -2]).norm(dim=-1) / vecs[:, -1].norm(dim=-1)).tolist()[: K - 1]
    shown = [th.columns["Δpass"] for th in ins.thoughts]
    assert (
        shown[:-1] == pytest.approx(change, rel=1e-5) and shown[-1] is None
    )  # the last: new in the last pass
    # Jacobi refinement: thought k is exact after k passes, so the last pass leaves the first T - 1
    # thoughts as they were and still moves the others (3 passes do not settle 4 thoughts).
    assert all(c < 1e-5 for c in change[: T - 1]) and all(c > 1e-3 for c in change[T - 1 :]), change
    assert "Δpass" in format_table(ins) and "refine over the thoughts: 3 parallel passes" in format_table(ins)


def test_inspect_over_the_answer_reads_the_last_pass(tiny_dir):
    """Rows are the answer positions that took a thought; each shows the draft token the thought was added to."""
    policy = refine_policy(tiny_dir, over="answer").eval()
    ins = inspect_thoughts(policy, "123+456=", max_new_tokens=6)
    ro = policy.rollout(*policy.encode(["123+456="]), 6, 0.0, torch.Generator().manual_seed(0))
    at = ro.feedback_mask[0].nonzero().squeeze(-1)
    draft = policy.mode.final_tokens(ro)[0, at]
    assert [th.token for th in ins.thoughts] == [repr(policy.tokenizer.decode([int(t)])) for t in draft]
    assert ins.answer == policy.decode(ro)[0]
