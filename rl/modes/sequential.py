"""The sequential engine: positions filled one at a time over a KV cache (modes off, latent, hybrid, channel).

Rollout, one step for every sequence of the batch at once:

    thought position (the first K steps):  token = <thought> (forced), input = E[token] + g * fed
    otherwise:                             token ~ softmax(logits / T), input = E[token] (+ g * fed
                                           where the mode feeds the answer)

where fed = the mode's `carry` of the thought f drawn from the previous position (f itself, or
channel mode's state read out). The recompute follows neuralese.recompute's two passes, with the live
blocks the mode lays out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from neuralese.feedback import Draw
from neuralese.models import CACHE
from neuralese.recompute import Recomputed, live_cache, scatter_token_logprobs
from neuralese.rollout import Rollout, Sampling, position_ids_from_mask, sample_tokens


@dataclass
class Decoding:
    """The state of a batched decoding loop: the KV cache, where it stands, and one record per step."""

    prompt_ids: torch.Tensor  # [B, P]
    prompt_mask: torch.Tensor  # [B, P]
    positions: torch.Tensor  # [B, P] position ids of the prompt
    cache: DynamicCache
    mask: torch.Tensor  # [B, P + steps] attention mask so far
    logits: torch.Tensor  # [B, V] next-token logits at the last position
    src: object  # Source [B] the next thought is computed from (None with feedback off)
    next_pos: torch.Tensor  # [B] position id of the next input
    finished: torch.Tensor  # [B] bool
    steps: list[dict[str, torch.Tensor]] = field(default_factory=list)
    state: object = None  # what the mode carries from step to step (channel mode's state)
    greedy: bool = False  # greedy decoding: each thought's most likely value too, not a draw

    @classmethod
    def start(
        cls, policy, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, greedy: bool = False
    ) -> Decoding:
        """The prompt, read in one parallel pass."""
        mask = prompt_mask.long()
        positions = position_ids_from_mask(mask)
        cache = DynamicCache(config=policy.model.config)
        out = policy.forward(policy.embed(prompt_ids), mask, positions, cache=cache, keep=1)
        finished = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
        return cls(
            prompt_ids,
            prompt_mask,
            positions,
            cache,
            mask,
            out.logits[:, -1],
            policy.thought_source(out, -1),
            positions[:, -1] + 1,
            finished,
            greedy=greedy,
        )

    def advance(self, policy, embeds: torch.Tensor, alive: torch.Tensor) -> None:
        """Run the inputs `embeds` [B, 1, D] of this step's position over the cache."""
        self.mask = torch.cat([self.mask, alive.long()[:, None]], dim=1)
        out = policy.forward(embeds, self.mask, self.next_pos[:, None], cache=self.cache, keep=1)
        self.logits, self.src = out.logits[:, -1], policy.thought_source(out, -1)
        self.next_pos = self.next_pos + 1

    def record(self, policy, temperature: float) -> Rollout:
        """The Rollout of a finished loop: prompt columns, then one column per step."""
        return record(policy, self.prompt_ids, self.prompt_mask, self.positions, self.steps, temperature)


# ----------------------------------------------------------------------------- rollout


@torch.no_grad()
def rollout(mode, policy, prompt_ids, prompt_mask, sampling: Sampling) -> Rollout:
    """K thought steps (the mode's `thought_positions`), then at most `max_new_tokens` answer tokens."""
    dec = Decoding.start(policy, prompt_ids, prompt_mask, greedy=sampling.greedy)
    num_thoughts = mode.thought_positions if policy.feedback_on else 0
    decode(mode, policy, dec, num_thoughts, sampling)
    return dec.record(policy, sampling.temperature)


def decode(mode, policy, dec: Decoding, num_thoughts: int, sampling: Sampling) -> None:
    """Append `num_thoughts` thought steps and at most `sampling.max_new_tokens` answer steps to `dec`."""
    bsz, device = dec.prompt_ids.shape[0], dec.prompt_ids.device
    temperature, generator, forced = sampling.temperature, sampling.generator, sampling.thoughts
    total = num_thoughts + sampling.max_new_tokens
    eos = policy.eos_token_ids(device)
    sampler = policy.adapter.sampler if policy.feedback_on else "none"
    for i in range(total):
        thinking = i < num_thoughts
        alive = ~dec.finished
        if thinking:
            tokens = torch.full((bsz,), policy.thought_token_id, device=device)
            logp = torch.zeros(bsz, device=device, dtype=torch.float64)
            action = torch.zeros(bsz, dtype=torch.bool, device=device)
        else:
            tokens, logp = sample_tokens(dec.logits, temperature, generator)
            tokens = torch.where(alive, tokens, policy.pad_token_id)
            logp, action = logp.double(), alive.clone()
        ends = action & torch.isin(tokens, eos) & (not sampling.ignore_eos)
        last = i == total - 1
        # Feedback into an input whose output is never used (eos, or the last position) would be
        # noise without effect: leave it out.
        feeds = policy.feedback_on and (thinking or mode.feeds_answer) and not last
        fb = alive & ~ends if feeds else torch.zeros_like(alive)
        embeds = policy.embed(tokens[:, None])  # [B, 1, D]
        record = {"ids": tokens, "mask": alive.long(), "action": action, "fb": fb}
        if fb.any():
            vec, thought_logp, draw = thought(
                policy, dec.src, generator, forced, len(dec.steps), fb, dec.greedy
            )
            fed, dec.state, columns = mode.carry(policy, vec, dec.state, fb)
            logp = logp + torch.where(fb, thought_logp, 0.0)
            embeds = torch.where(fb[:, None, None], policy.adapter.combine(embeds, fed[:, None]), embeds)
            record.update(
                vec=fed,
                **{f"draw.{k}": v for k, v in draw.items()},
                **{f"extra.{k}": v for k, v in columns.items()},
            )
        record["logp"] = torch.where(action | (fb & (sampler != "none")), logp, 0.0)
        dec.steps.append(record)
        dec.finished = dec.finished | ends
        if dec.finished.all() or last:
            break
        dec.advance(policy, embeds, alive)


def thought(
    policy, src, generator, forced: torch.Tensor | None, step: int, fb: torch.Tensor, greedy: bool = False
):
    """One step's thoughts [B, D], their log-prob [B] and draw tensors, masked to feedback rows `fb`
    (`greedy`: each thought's most likely value, for greedy decoding)."""
    if forced is not None and step < forced.shape[1]:
        vec = forced[:, step].float()
        return vec, torch.zeros(vec.shape[0], dtype=torch.float64, device=vec.device), {}
    vec, logp, draw = policy.adapter.sample(src, policy.embedding_table, generator, greedy)
    vec = torch.where(fb[:, None], vec, 0.0)
    return vec, logp, {k: masked(v, fb) for k, v in vars(draw).items() if v is not None}


def masked(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`t` [B, ...] with the entries outside `rows` ([B], or [B, T] for [B, T, ...]) set to zero."""
    return torch.where(rows.view(*rows.shape, *[1] * (t.dim() - rows.dim())), t, torch.zeros_like(t))


def record(policy, prompt_ids, prompt_mask, positions, steps, temperature) -> Rollout:
    """The Rollout of `steps` (one dict of [B, ...] tensors per generated position) after a prompt."""
    bsz, plen = prompt_ids.shape
    device = prompt_ids.device

    def column(key: str, like: torch.Tensor | None = None) -> torch.Tensor:
        """Step values of `key` stacked along positions, zeros at steps that lack it, prompt zeros first."""
        ref = like if like is not None else next(s[key] for s in steps if key in s)
        vals = [s[key] if key in s else torch.zeros_like(ref) for s in steps]
        gen = torch.stack(vals, dim=1)  # [B, G, ...]
        return torch.cat([gen.new_zeros(bsz, plen, *gen.shape[2:]), gen], dim=1)

    def columns(prefix: str) -> dict[str, torch.Tensor]:
        keys = {k.split(".", 1)[1] for s in steps for k in s if k.startswith(prefix)}
        return {k: column(prefix + k) for k in sorted(keys)}

    vec_like = torch.zeros(bsz, policy.hidden_size, device=device)
    gen_len = len(steps)
    return Rollout(
        input_ids=torch.cat([prompt_ids, torch.stack([s["ids"] for s in steps], 1)], dim=1),
        attention_mask=torch.cat([prompt_mask.long(), torch.stack([s["mask"] for s in steps], 1)], dim=1),
        position_ids=torch.cat(
            [positions, positions[:, -1:] + 1 + torch.arange(gen_len, device=device)], dim=1
        ),
        action_mask=column("action"),
        feedback_mask=column("fb"),
        feedback=column("vec", vec_like),
        logprobs=column("logp").double(),
        prompt_length=plen,
        temperature=temperature if temperature > 0 else 1.0,
        sampler=policy.adapter.sampler if policy.feedback_on else "none",
        draw=Draw(**columns("draw.")),
        extra=columns("extra."),
    )


# ----------------------------------------------------------------------------- recompute


def recompute(mode, policy, ro: Rollout, window, probe: torch.Tensor | None, need_hidden: bool) -> Recomputed:
    """Pass 1 with recorded constants, then the mode's live blocks step by step (neuralese.recompute)."""
    bsz, length = ro.input_ids.shape
    fb_on = policy.feedback_on
    adapter = policy.adapter
    mask, pos, fb = ro.attention_mask, ro.position_ids, ro.feedback_mask
    embeds = policy.embed(ro.input_ids)  # [B, L, D]
    x0 = torch.where(fb[..., None], adapter.combine(embeds, ro.feedback), embeds) if fb_on else embeds
    blocks = mode.live_blocks(ro.prompt_length, length, window) if fb_on and window != 0 else []
    tail = blocks[-1][1] if blocks and mode.parallel_tail else length

    # Logits at t-1 score the token at t. Which of them come from pass 1?
    need = ro.action_mask[:, 1:].any(0)  # [L-1]
    live = torch.zeros(length - 1, dtype=torch.bool, device=need.device)
    for s, e in blocks:
        live[s:e] = True
    live[tail:] = True
    const_idx = (need & ~live).nonzero().squeeze(-1)  # [n]
    # Pass 1 stops where the last live block starts: what comes after is recomputed over the
    # live cache anyway (unless a value head needs every hidden state).
    end1 = length
    if blocks and not need_hidden:
        end1 = max(blocks[-1][0], int(const_idx.max()) + 1 if const_idx.numel() else 0)

    out0 = policy.model(
        inputs_embeds=x0[:, :end1],
        attention_mask=mask[:, :end1],
        position_ids=pos[:, :end1],
        use_cache=bool(blocks),
        **{CACHE: DynamicCache(config=policy.model.config) if blocks else None},
        output_hidden_states=fb_on or need_hidden,
        logits_to_keep=const_idx,
        return_dict=True,
    )
    live_fb = torch.zeros_like(fb)
    for s, e in blocks:
        live_fb[:, s:e] = fb[:, s:e]
    const_fb = fb & ~live_fb  # [B, L] feedback positions whose recorded thought is a constant
    sources = pass1_sources(policy, out0, ro, blocks, const_fb, probe) if fb_on else None
    segments = [(const_idx, out0.logits)]  # (logit positions [n], logits [B, n, V])
    thought_logprobs = torch.zeros(bsz, length, dtype=torch.float64, device=embeds.device)
    for s, e in blocks:
        with live_cache(policy, getattr(out0, CACHE), s, mask) as (cache, mask_for):
            block_logits = live_block(
                mode, policy, ro, (s, e), sources(s - 1), cache, mask_for, embeds, x0, thought_logprobs, probe
            )
            segments.append((torch.arange(s, e, device=need.device), block_logits))
            if (s, e) == blocks[-1] and tail < length - 1:
                out = policy.forward(
                    x0[:, tail:], mask_for(tail, length - tail), pos[:, tail:], cache=cache, keep=0
                )
                segments.append((torch.arange(tail, length, device=need.device), out.logits))

    logprobs, entropy = scatter_token_logprobs(ro, segments)
    if fb_on and ro.sampler != "none" and const_fb.any():
        thought_logprobs = thought_logprobs + constant_densities(policy, ro, sources, const_fb)
    hidden = out0.hidden_states[-1] if need_hidden else None
    return Recomputed(
        token_logprobs=logprobs, thought_logprobs=thought_logprobs, entropy=entropy, hidden=hidden
    )


def live_block(mode, policy, ro: Rollout, block, src, cache, mask_for, embeds, x0, thought_logprobs, probe):
    """Recompute the inputs of positions [s, e) one step at a time from the previous hidden state; the
    densities of their sampled thoughts go into `thought_logprobs` [B, L]. Returns the logits [B, e - s, V]."""
    (s, e), adapter, table = block, policy.adapter, policy.embedding_table
    fb, pos = ro.feedback_mask, ro.position_ids
    state, block_logits = mode.entering_state(ro, s), []
    for t in range(s, e):
        draw = ro.draw[:, t]
        vec = adapter.vector(src, table, draw)  # [B, D], the recorded draw replayed
        if ro.sampler != "none":
            dens = adapter.logprob(src, table, draw, vec, live=True)
            thought_logprobs[:, t] = torch.where(fb[:, t], dens, 0.0)
        fed, state, _ = mode.carry(policy, vec, state, fb[:, t])
        x_t = torch.where(fb[:, t, None], adapter.combine(embeds[:, t], fed), x0[:, t])  # [B, D]
        out = policy.forward(x_t[:, None], mask_for(t, 1), pos[:, t : t + 1], cache=cache, keep=1)
        block_logits.append(out.logits[:, -1])
        src = policy.thought_source(out, -1, None if probe is None else probe[:, t])
    return torch.stack(block_logits, dim=1)


def pass1_sources(policy, out0, ro: Rollout, blocks, const_fb: torch.Tensor, probe):
    """`sources(p)`: the thought source [B] at position p of pass 1, or at several positions [B, n].

    Computed once, at the positions some thought reads from: the start of each live block, and
    (for sampled thoughts) the positions before constant thoughts, whose density is scored.
    """
    wanted = {s - 1 for s, _ in blocks}
    if ro.sampler != "none":
        wanted |= {int(t) - 1 for t in const_fb.any(0).nonzero().squeeze(-1)}
    idx = torch.tensor(sorted(wanted), dtype=torch.long, device=ro.input_ids.device)
    src = policy.thought_source(out0, idx, None if probe is None else probe[:, idx])
    column = {int(p): i for i, p in enumerate(idx.tolist())}

    def sources(p):
        if isinstance(p, int):
            return src[:, column[p]]
        return src[:, torch.tensor([column[int(q)] for q in p], device=idx.device)]

    return sources


def constant_densities(policy, ro: Rollout, sources, const_fb: torch.Tensor) -> torch.Tensor:
    """[B, L] float64 log-density of the recorded (constant) thoughts, scored against pass-1 sources.

    Their gradient is the score function: on a constant edge the recorded thought is the action.
    """
    at = const_fb.any(0).nonzero().squeeze(-1)  # [n] positions with a constant thought in some row
    src = sources((at - 1).tolist())  # [B, n]
    dens = policy.adapter.logprob(src, policy.embedding_table, ro.draw[:, at], ro.thoughts[:, at], live=False)
    out = torch.zeros(const_fb.shape, dtype=torch.float64, device=const_fb.device)
    return out.index_copy(1, at, torch.where(const_fb[:, at], dens, 0.0))
