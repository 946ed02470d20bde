"""Refine mode: thoughts filled in T parallel passes (Jacobi iteration, as in PCCoT, Wu et al. 2025).

A chain of thoughts is filled one position at a time; Jacobi iteration fills all its positions at
once and improves them over T passes instead. The span of n positions is run as one parallel
forward over the prompt's cache in every pass; pass tau feeds each position the thought of the
previous pass's state at the position before it:

    e^tau_u = E[x^tau_u] + g * f(h^{tau-1}_{u-1})      h^{tau-1}_{P-1} = the prompt's last state

Pass 1 feeds only the span's first position (the others have no pass before them); a pass before
the last leaves out the positions from which no thought could reach the answer (`fed_positions`),
and computes no further right than the next pass reads (`pass_width`).

After pass tau the first tau positions equal the sequential mode's exactly (each reads a state that
has already settled), so with T = n refine *is* the sequential mode; with T < n it trades exactness
for T parallel passes instead of n sequential steps. Two spans (`refine_over`):

- `thoughts`: the K thought positions (x = <thought>); then the answer is written token by token
  over the last pass's cache, as in latent mode. T = K equals latent mode.
- `answer`: the answer itself. x^1 is a draft (the greedy first token, padding after it); each later
  pass's tokens are the previous pass's greedy next tokens, so the draft and every pass are
  deterministic given the prompt and the thoughts. In the last pass the answer is sampled: y_u ~
  softmax(z^T_{u-1} / temperature), all positions at once, so the policy's log-prob is exactly
  sum_u log p(y_u | z^T_{u-1}) plus the thoughts'. With T = n and temperature 0 it equals hybrid mode;
  at temperature > 0 the tokens are sampled given the last pass's greedy draft rather than one
  another, a different policy from hybrid's even with the gate closed (each pass then is the plain
  model on its draft: Jacobi decoding of it).

Every pass's thoughts may be sampled (any sampler of neuralese.thoughts); each is an action of the policy,
its density summed into the position's log-prob. The record keeps every pass's inputs
(`extra['pass_feedback']` [B, L, T, D], `extra['pass_fed']` [B, L, T], `extra['pass_tokens']` [B, L, T]
over the answer) and draws (`draw`, [B, L, T, ...]); `feedback` holds the last pass's.

TBPTT window k counts passes. The last k passes are live: each is recomputed as a differentiable
function of the previous pass's states, the first of them from states computed with recorded
constants (one parallel forward), so no gradient path crosses more than k passes; earlier passes'
thoughts are constants. Every pass runs over pass 1's prompt cache cut at the span, so a pass
never reads another pass's keys and values. k = 0 is latent mode's single parallel pass.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import DynamicCache

from neuralese.feedback import Source
from neuralese.models import CACHE
from neuralese.modes import sequential
from neuralese.modes.base import ThoughtMode
from neuralese.recompute import Recomputed, live_cache, scatter_token_logprobs
from neuralese.rollout import Rollout, Sampling, sample_tokens
from neuralese.segments import SegmentCache


class RefineMode(ThoughtMode):
    name = "refine"
    feeds_back = True

    @property
    def over_thoughts(self) -> bool:
        return self.cfg.refine_over == "thoughts"

    @property
    def thoughts_first(self) -> bool:
        return self.over_thoughts

    def window_limit(self) -> tuple[str, int, str]:
        return "neuralese.refine_passes", self.cfg.refine_passes, " (it counts passes)"

    def describe_config(self) -> str:
        return f"refine mode over the {self.cfg.refine_over}"

    @property
    def uses_thought_token(self) -> bool:
        return self.over_thoughts

    @property
    def feeds_answer(self) -> bool:
        return not self.over_thoughts

    @property
    def thought_positions(self) -> int:
        return self.cfg.num_thoughts if self.over_thoughts else 0

    # ------------------------------------------------------------------ rollout

    @torch.no_grad()
    def rollout(self, policy, prompt_ids, prompt_mask, sampling: Sampling) -> Rollout:
        dec = sequential.Decoding.start(policy, prompt_ids, prompt_mask, greedy=sampling.greedy)
        if not self.over_thoughts:
            self.fill_answer(policy, dec, sampling)
            return dec.record(policy, sampling.temperature)
        if self.cfg.num_thoughts:
            self.fill_thoughts(policy, dec, sampling.generator, sampling.thoughts)
        plain = ThoughtMode(self.cfg)  # the answer after the thoughts: tokens only, as in latent mode
        sequential.decode(plain, policy, dec, 0, dataclasses.replace(sampling, thoughts=None))
        return dec.record(policy, sampling.temperature)

    @property
    def unread(self) -> int:
        """Span positions at the end whose last-pass output the answer never reads."""
        return 0 if self.over_thoughts else 1

    def passes(self, policy, dec, tokens, generator, forced, keep: int, redraft=None):
        """Run the T passes over a span of n positions after the prompt, starting from `tokens` [B, n];
        `redraft(logits, n)` gives the next pass's tokens from this pass's logits. Returns each pass's record and the last pass's
        logits; `dec` is left at the span's end, with the last pass's cache."""
        bsz, n = tokens.shape
        mask = torch.cat([dec.mask, torch.ones(bsz, n, dtype=dec.mask.dtype, device=dec.mask.device)], 1)
        pos = dec.next_pos[:, None] + torch.arange(n, device=tokens.device)
        first, prev, done, T = dec.src[:, None], None, [], self.cfg.refine_passes
        for tau in range(1, T + 1):
            m, w = fed_positions(tau, T, n, self.unread), pass_width(tau, T, n, self.unread)
            src = cat_sources(first, prev[:, : m - 1]) if m > 1 else first[:, :m]  # [B, m]
            vec, logp, draw = pass_thoughts(policy, src, generator, forced, dec.greedy)
            done.append({"tokens": tokens, "vec": vec, "logp": logp, "draw": draw})
            if w == 0:  # nothing this pass computes could reach the answer (more passes than positions)
                tokens = redraft(dec.logits[:, None][:, :0], n) if redraft is not None else tokens
                continue
            embeds = policy.embed(tokens[:, :w])  # [B, w, D]
            x = torch.cat([policy.adapter.combine(embeds[:, :m], vec), embeds[:, m:]], dim=1)
            # Each pass reads the prompt's keys and values only, never an earlier pass's; through the
            # recompute's own cache and attention, so that a pass recomputed from recorded inputs gives
            # the same floats (a sampled thought's density amplifies any difference by |eps| / sigma).
            with live_cache(policy, dec.cache, dec.prompt_ids.shape[1], mask) as (cache, mask_for):
                out = policy.forward(
                    x, mask_for(dec.prompt_ids.shape[1], w), pos[:, :w], cache=cache, keep=keep
                )
            prev = policy.thought_source(out)
            tokens = redraft(out.logits, n) if redraft is not None else tokens
        dec.cache, dec.mask, dec.next_pos = joined(cache, policy), mask, dec.next_pos + n
        dec.logits, dec.src = out.logits[:, -1], prev[:, -1]
        return done, out.logits

    def fill_thoughts(self, policy, dec, generator, forced) -> None:
        """The K thought positions, in T passes; one step record each, as latent mode's."""
        bsz, K = dec.prompt_ids.shape[0], self.cfg.num_thoughts
        device = dec.prompt_ids.device
        tokens = torch.full((bsz, K), policy.thought_token_id, device=device)
        done, _ = self.passes(policy, dec, tokens, generator, forced, keep=1)
        every = torch.ones(bsz, K, dtype=torch.bool, device=device)
        logp = torch.zeros(bsz, K, dtype=torch.float64, device=device)
        self.append_steps(policy, dec, done, tokens, every, torch.zeros_like(every), logp, every)

    def fill_answer(self, policy, dec, sampling: Sampling) -> None:
        """A greedy draft refined in T passes; the answer sampled from the last pass's logits."""
        n, generator = sampling.max_new_tokens, sampling.generator
        bsz, device = dec.prompt_ids.shape[0], dec.prompt_ids.device
        greedy_first = dec.logits.argmax(-1)  # [B]: the prompt's own next token, the same in every pass
        draft = torch.full((bsz, n), policy.pad_token_id, device=device)
        draft[:, 0] = greedy_first

        def redraft(logits, n):  # the next pass's tokens: the greedy ones after each position computed
            pad = torch.full((bsz, n), policy.pad_token_id, device=device)
            return torch.cat([greedy_first[:, None], logits.argmax(-1), pad], dim=1)[:, :n]

        scores = dec.logits[:, None]  # [B, 1, V] the prompt's logits score the first answer token
        done, last = self.passes(policy, dec, draft, generator, sampling.thoughts, keep=0, redraft=redraft)
        logits = torch.cat([scores, last[:, :-1]], dim=1)  # [B, n, V]: logits[:, u] score y_u
        y, logp = sample_tokens(logits.flatten(0, 1), sampling.temperature, generator)
        y, logp = y.view(bsz, n), logp.view(bsz, n).double()
        is_eos = torch.isin(y, policy.eos_token_ids(device)) & (not sampling.ignore_eos)
        alive = (is_eos.long().cumsum(-1) - is_eos.long()) == 0  # [B, n]: no eos before u
        y = torch.where(alive, y, policy.pad_token_id)
        # As in the sequential modes: no thought into an eos or the last position (its output is unused).
        fb = alive & ~is_eos
        fb[:, -1] = False
        self.append_steps(policy, dec, done, y, alive, alive, logp, fb)

    def append_steps(self, policy, dec, done, ids, alive, action, token_logp, fb) -> None:
        """One step record per span position: the answer (or thought) tokens, the last pass's thoughts,
        and every pass's inputs and draws (a pass's thought counts only where the last pass's does)."""
        n, sampler, T = ids.shape[1], policy.adapter.sampler, len(done)
        span = lambda t: torch.cat([t, t.new_zeros(t.shape[0], n - t.shape[1], *t.shape[2:])], 1)  # noqa: E731
        # A pass's thought at u counts where it can reach a position of the last pass that counts
        # (`fb`: over the answer, none at or after eos): u + (T - tau) (see `fed_positions`).
        reach = torch.cat([fb, fb.new_zeros(fb.shape[0], T)], dim=1)  # [B, n + T]
        fed = torch.stack(
            [
                span(torch.ones_like(p["logp"], dtype=torch.bool)) & reach[:, T - tau : T - tau + n]
                for tau, p in enumerate(done, 1)
            ],
            -1,
        )  # [B, n, T]
        vecs = sequential.masked(torch.stack([span(p["vec"]) for p in done], 2), fed)  # [B, n, T, D]
        thought_logp = sequential.masked(torch.stack([span(p["logp"]) for p in done], -1), fed).sum(
            -1
        )  # [B, n]
        like = done[-1]["draw"]  # the last pass feeds every position: it has every kind of draw
        draws = {k: torch.stack([span(p["draw"].get(k, v[:, :0])) for p in done], 2) for k, v in like.items()}
        logp = token_logp + thought_logp
        for u in range(n):
            on = fed[:, u]  # [B, T]
            record = {
                "ids": ids[:, u],
                "mask": alive[:, u].long(),
                "action": action[:, u],
                "fb": fb[:, u],
                "vec": vecs[:, u, -1],
                "extra.pass_feedback": vecs[:, u],
                "extra.pass_fed": on,
                "extra.pass_tokens": torch.stack([p["tokens"][:, u] for p in done], -1),
                "logp": torch.where(action[:, u] | (fb[:, u] & (sampler != "none")), logp[:, u], 0.0),
            }
            record.update({f"draw.{k}": sequential.masked(v[:, u], on) for k, v in draws.items()})
            dec.steps.append(record)

    # ------------------------------------------------------------------ recompute

    def span(self, ro) -> tuple[int, int]:
        a = ro.prompt_length
        return a, (a + self.cfg.num_thoughts if self.over_thoughts else ro.input_ids.shape[1])

    def final_tokens(self, ro) -> torch.Tensor:
        """[B, L] the input tokens of the last pass (over the answer: its draft, not the sampled answer)."""
        if self.over_thoughts:
            return ro.input_ids
        a, _ = self.span(ro)
        return torch.cat([ro.input_ids[:, :a], ro.extra["pass_tokens"][:, a:, -1]], dim=1)

    def recompute(self, policy, ro, window, probe, need_hidden) -> Recomputed:
        a, b = self.span(ro)
        if b == a:  # no thoughts at this curriculum stage: the plain teacher-forced pass
            return sequential.recompute(ThoughtMode(self.cfg), policy, ro, 0, probe, need_hidden)
        T, length = self.cfg.refine_passes, ro.input_ids.shape[1]
        k = self.live_edges(window)
        sampled = ro.sampler != "none"
        mask, pos = ro.attention_mask, ro.position_ids
        x_final = self.final_inputs(policy, ro)  # [B, L, D] the recorded inputs of the last pass
        # Logits at t score the token at t+1: the prompt's last ones score the answer's first token.
        const_idx = ro.action_mask[:, 1 : a + 1].any(0).nonzero().squeeze(-1)  # [n] positions < a
        # The prompt, read as the rollout read it; every pass then runs over its cache.
        out0 = policy.model(
            inputs_embeds=x_final[:, :a],
            attention_mask=mask[:, :a],
            position_ids=pos[:, :a],
            use_cache=True,
            **{CACHE: DynamicCache(config=policy.model.config)},
            output_hidden_states=True,
            logits_to_keep=const_idx,
            return_dict=True,
        )
        segments = [(const_idx, out0.logits)]
        thought_lp = torch.zeros(ro.input_ids.shape, dtype=torch.float64, device=ro.input_ids.device)
        prev = None  # the previous pass's output over the span, where it was needed
        for tau in range(1, T + 1):
            live = tau > T - k
            # A pass is run if its logits score the answer (the last), or the next pass reads its states:
            # the next is live, or it is constant with sampled thoughts whose density is scored against them.
            if not (tau >= T - k or sampled) or pass_width(tau, T, b - a, self.unread) == 0:
                prev = None
                continue
            m = fed_positions(tau, T, b - a, self.unread)
            src = pass_sources(policy, out0, prev, tau, m, (a, b), probe) if live or sampled else None
            x = self.pass_inputs(policy, ro, tau, (a, b), src, live, thought_lp)
            if tau == T:  # the last pass carries on over the rest of the sequence (latent mode's answer)
                x = torch.cat([x, x_final[:, b:]], dim=1)
            with live_cache(policy, getattr(out0, CACHE), a, mask) as (cache, mask_for):
                prev = policy.forward(
                    x,
                    mask_for(a, x.shape[1]),
                    pos[:, a : a + x.shape[1]],
                    cache=cache,
                    keep=0 if tau == T else 1,
                )
        segments.append((torch.arange(a, length, device=const_idx.device), prev.logits))
        token_lp, entropy = scatter_token_logprobs(ro, segments)
        hidden = torch.cat([out0.hidden_states[-1], prev.hidden_states[-1]], dim=1) if need_hidden else None
        return Recomputed(
            token_logprobs=token_lp, thought_logprobs=thought_lp, entropy=entropy, hidden=hidden
        )

    def pass_inputs(self, policy, ro, tau: int, span, src, live: bool, thought_lp) -> torch.Tensor:
        """[B, w, D] the inputs of pass `tau` over the span's first w positions (`pass_width`): live thoughts rebuilt from `src` (their draws
        replayed), or the recorded ones; the thoughts' densities are added to `thought_lp` [B, L]."""
        (a, b), adapter, table = span, policy.adapter, policy.embedding_table
        w = pass_width(tau, self.cfg.refine_passes, b - a, self.unread)
        tokens = (
            ro.input_ids[:, a : a + w]
            if self.over_thoughts
            else ro.extra["pass_tokens"][:, a : a + w, tau - 1]
        )
        embeds = policy.embed(tokens)  # [B, w, D]
        m = fed_positions(tau, self.cfg.refine_passes, b - a, self.unread)
        if m == 0:
            return embeds
        fed, draw = ro.extra["pass_fed"][:, a : a + m, tau - 1], ro.draw[:, a : a + m, tau - 1]
        recorded = ro.extra["pass_feedback"][:, a : a + m, tau - 1]  # [B, m, D]
        vec = adapter.vector(src, table, draw) if live else recorded
        if ro.sampler != "none":
            dens = adapter.logprob(src, table, draw, vec, live=live)  # [B, m]
            thought_lp[:, a : a + m] += torch.where(fed, dens, 0.0)
        head = torch.where(fed[..., None], adapter.combine(embeds[:, :m], vec), embeds[:, :m])
        return torch.cat([head, embeds[:, m:]], dim=1)

    # ------------------------------------------------------------------ inspection

    def inspect_columns(self, policy, ro, positions: torch.Tensor) -> dict[str, list[float | None]]:
        """Δpass: |f^T - f^{T-1}| / |f^T| of each thought, how far the last pass still moved it (0: settled)."""
        if self.cfg.refine_passes < 2:
            return {"Δpass": [None] * len(positions)}
        vecs, fed = (
            ro.extra["pass_feedback"][0, positions],
            ro.extra["pass_fed"][0, positions],
        )  # [n, T, D], [n, T]
        change = (vecs[:, -1] - vecs[:, -2]).norm(dim=-1) / vecs[:, -1].norm(dim=-1).clamp_min(1e-12)
        return {"Δpass": [float(c) if on else None for c, on in zip(change, fed[:, -2])]}

    def describe(self, policy) -> str:
        return f"refine over the {self.cfg.refine_over}: {self.cfg.refine_passes} parallel passes"


def joined(cache, policy) -> DynamicCache:
    """A pass's cache as one DynamicCache of the prompt and the pass (what the answer decodes over)."""
    if not isinstance(cache, SegmentCache):
        return cache
    layers = [
        (torch.cat([pk, lk], -2), torch.cat([pv, lv], -2))
        for (pk, pv), (lk, lv) in zip(cache.prefix, cache.live)
    ]
    return DynamicCache(ddp_cache_data=layers, config=policy.model.config)


def fed_positions(tau: int, passes: int, n: int, unread: int) -> int:
    """How many of the span's n positions, from its first, take a thought in pass `tau` (1-based).

    Pass 1 feeds only the first (the others have no pass before them to read). A thought must be
    able to reach the answer: one at u in pass tau reaches the last pass no further right than
    u + (passes - tau), one position a pass, so the last `passes - tau` positions of a pass before the
    last are left out; and `unread` more at the end whose outputs the answer never reads (1 over the
    answer: its last position scores nothing). A thought there would be drawn for nothing, and its
    density would add only noise to the gradient. With passes = n over thoughts this leaves pass tau
    the first tau positions: exactly the ones that have settled."""
    return max(0, min(1 if tau == 1 else n, n - unread - (passes - tau)))


def pass_width(tau: int, passes: int, n: int, unread: int) -> int:
    """How many of the span's positions, from its first, pass `tau` computes: all in the last pass; in
    a pass before it, those whose states the next pass's thoughts read (`fed_positions` - 1 of them:
    the outputs further right could reach the answer no more than a thought there could)."""
    return n if tau == passes else max(0, n - unread - (passes - tau))


def cat_sources(*parts: Source) -> Source:
    """Sources [B, n_i] joined along positions: [B, sum n_i]."""
    join = lambda ts: None if ts[0] is None else torch.cat(ts, dim=1)  # noqa: E731
    return Source(join([p.hidden for p in parts]), join([p.logits for p in parts]))


def pass_thoughts(policy, src: Source, generator, forced: torch.Tensor | None, greedy: bool = False):
    """Thoughts [B, m, D] of a pass drawn from sources [B, m], their log-prob [B, m] and draws {name: [B, m, ...]};
    positions with a `forced` [B, S, D] vector take it instead (drawn by nobody: no log-prob, no draw)."""
    lead = (src.hidden if src.hidden is not None else src.logits).shape[:2]
    if lead[1] == 0:  # a pass that feeds nothing (a span of one position, before the last pass)
        empty = torch.zeros(*lead, policy.hidden_size, device=policy.device)
        return empty, torch.zeros(lead, dtype=torch.float64, device=policy.device), {}
    vec, logp, draw = policy.adapter.sample(src, policy.embedding_table, generator, greedy)
    draw = {k: v for k, v in vars(draw).items() if v is not None}
    if forced is not None:
        s = min(forced.shape[1], vec.shape[1])
        vec = torch.cat([forced[:, :s].float(), vec[:, s:]], dim=1)
        logp = torch.cat([torch.zeros_like(logp[:, :s]), logp[:, s:]], dim=1)
        draw = {k: torch.cat([torch.zeros_like(v[:, :s]), v[:, s:]], dim=1) for k, v in draw.items()}
    return vec, logp, draw


def pass_sources(policy, out0, prev, tau: int, m: int, span, probe) -> Source:
    """Sources [B, m] of pass `tau`'s thoughts into the span's first m positions: the prompt's last state
    for the first, the previous pass's states (`prev`) for the others. `probe` ([B, L, D], or [B, T, L, D] one per
    pass) is added to them: its gradient is the gradient reaching each edge into pass `tau`."""
    a, b = span
    p = None if probe is None else (probe if probe.dim() == 3 else probe[:, tau - 1])  # [B, L, D]
    idx = torch.tensor([a - 1], device=out0.hidden_states[-1].device)
    first = policy.thought_source(out0, idx, None if p is None else p[:, a - 1 : a])
    if m <= 1:
        return first[:, :m]
    rest = policy.thought_source(prev, slice(0, m - 1), None if p is None else p[:, a : a + m - 1])
    return cat_sources(first, rest)
