"""Batched neuralese rollouts with a KV cache, and the `Rollout` record they produce.

One step of the loop, for every sequence of the batch at once:

    latent mode, step < K:  token = <thought> (forced), input = E[token] + g * f(h_prev)
    otherwise:              token ~ softmax(logits / T), input = E[token] (+ g * f(h_prev) in hybrid mode)

The record keeps everything the loss needs to recompute exactly what was sampled:
token ids, masks, the sampling log-probs, the fed-back vectors and the noise behind them.
All tensors span the whole sequence (prompt then generated positions) so that position
t of every tensor refers to the same input position.

Left padding: prompts are padded on the left and position ids are given explicitly
(cumulative sum of the mask), so a padded prompt behaves like the unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from transformers import DynamicCache

from rl.policy import NeuralesePolicy


@dataclass
class Rollout:
    """Sampled sequences and what the recompute needs. B sequences, L = P + G positions."""

    input_ids: torch.Tensor  # [B, L] long: prompt (left-padded), then thought and answer tokens
    attention_mask: torch.Tensor  # [B, L] long: 1 on real positions
    position_ids: torch.Tensor  # [B, L] long
    action_mask: torch.Tensor  # [B, L] bool: the token at t was sampled (its log-prob counts)
    feedback_mask: torch.Tensor  # [B, L] bool: the input at t received feedback from position t-1
    # [B, L, D] float32: fed-back vector (noise included) at feedback positions, else 0
    feedback: torch.Tensor
    # [B, L, D] float32: standard-normal draws behind the noise, None if sigma = 0
    noise: torch.Tensor | None
    # [B, L] float64: sampling log-prob (token + feedback noise) at loss positions, else 0. float64
    # because the noise log-density sums D terms: its float32 value would blur the ratio.
    logprobs: torch.Tensor
    prompt_length: int  # P
    temperature: float  # log-probs are of softmax(logits / temperature); 1.0 for greedy
    noise_std: float  # sigma

    @property
    def loss_mask(self) -> torch.Tensor:
        """[B, L] bool: positions whose log-prob is part of the policy's log-probability."""
        if self.noise_std > 0:
            return self.action_mask | self.feedback_mask
        return self.action_mask

    @property
    def num_thoughts(self) -> torch.Tensor:
        """[B] long: thought positions (feedback positions that sampled no token)."""
        return (self.feedback_mask & ~self.action_mask)[:, self.prompt_length :].sum(-1)

    @property
    def generated_positions(self) -> torch.Tensor:
        """[B] long: thought and answer positions actually used (pads after eos excluded)."""
        return self.attention_mask[:, self.prompt_length :].sum(-1)

    def completion_ids(self) -> list[list[int]]:
        """The sampled answer tokens of each sequence (no thoughts, no padding), eos included."""
        return [row[mask].tolist() for row, mask in zip(self.input_ids, self.action_mask)]

    def select(self, index: torch.Tensor | slice) -> Rollout:
        """The rows `index` (for micro-batches)."""
        tensors = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **tensors)

    def to(self, device: torch.device | str) -> Rollout:
        tensors = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **tensors)


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] attention mask -> [B, T] positions counting only real tokens (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Sample one token per row; returns (tokens [B], log-probs [B]) at the sampling temperature."""
    if temperature == 0:
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, V]
        tokens = logp.argmax(-1)
    else:
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


@torch.no_grad()
def generate_rollout(
    policy: NeuralesePolicy,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    ignore_eos: bool = False,
) -> Rollout:
    """Sample thoughts and answers for a batch of left-padded prompts.

    prompt_ids, prompt_mask: [B, P]. Greedy when `temperature` is 0. Latent mode runs
    `num_thoughts` thought positions before the at most `max_new_tokens` answer tokens.
    `ignore_eos` keeps sampling after eos (benchmarks that need a fixed length).
    """
    cfg, device = policy.config, prompt_ids.device
    bsz, plen = prompt_ids.shape
    latent = cfg.mode == "latent"
    hybrid = cfg.mode == "hybrid"
    sigma = cfg.noise_std if policy.feedback_on else 0.0
    num_thoughts = cfg.num_thoughts if latent and policy.feedback_on else 0
    total = num_thoughts + max_new_tokens
    eos = policy.eos_token_ids(device)

    mask = prompt_mask.long()
    positions = position_ids_from_mask(mask)
    cache = DynamicCache(config=policy.model.config)
    out = policy.forward(policy.embed(prompt_ids), mask, positions, cache=cache, keep=1)
    logits, h_prev = out.logits[:, -1], policy.feedback_source(out)

    step_ids, step_mask, step_action, step_fb, step_vec, step_noise, step_logp = [], [], [], [], [], [], []
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    next_pos = positions[:, -1] + 1
    for step in range(total):
        thinking = step < num_thoughts
        alive = ~finished
        if thinking:
            tokens = torch.full((bsz,), policy.thought_token_id, device=device)
            logp = torch.zeros(bsz, device=device)
            action = torch.zeros(bsz, dtype=torch.bool, device=device)
        else:
            tokens, logp = _sample(logits, temperature, generator)
            tokens = torch.where(alive, tokens, policy.pad_token_id)
            action = alive.clone()
        ends = action & torch.isin(tokens, eos) & (not ignore_eos)
        last = step == total - 1
        # Feedback into an input whose output is never used (eos, or the last position) would be
        # noise without effect: leave it out.
        fb = (
            alive & ~ends
            if policy.feedback_on and (thinking or hybrid) and not last
            else torch.zeros_like(alive)
        )
        embeds = policy.embed(tokens[:, None])  # [B, 1, D]
        vec = torch.zeros(bsz, policy.hidden_size, device=device)
        noise = None
        if fb.any():
            vec = policy.adapter.feedback(h_prev[:, -1])  # [B, D]
            if sigma > 0:
                noise = torch.randn(vec.shape, generator=generator, device=device)
                vec = vec + sigma * noise
                logp = logp + torch.where(fb, policy.adapter.noise_logprob(noise), 0.0)
            vec = torch.where(fb[:, None], vec, 0.0)
            embeds = torch.where(fb[:, None, None], policy.adapter.combine(embeds, vec[:, None]), embeds)
        step_ids.append(tokens)
        step_mask.append(alive.long())
        step_action.append(action)
        step_fb.append(fb)
        step_vec.append(vec)
        step_noise.append(noise if noise is not None else torch.zeros_like(vec))
        step_logp.append(torch.where(action | (fb & (sigma > 0)), logp, 0.0))
        finished = finished | ends
        if finished.all() or last:
            break
        mask = torch.cat([mask, alive.long()[:, None]], dim=1)
        out = policy.forward(embeds, mask, next_pos[:, None], cache=cache, keep=1)
        logits, h_prev = out.logits[:, -1], policy.feedback_source(out)
        next_pos = next_pos + 1

    stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
    return Rollout(
        input_ids=torch.cat([prompt_ids, stack(step_ids)], dim=1),
        attention_mask=torch.cat([prompt_mask.long(), stack(step_mask)], dim=1),
        position_ids=torch.cat(
            [positions, positions[:, -1:] + 1 + torch.arange(len(step_ids), device=device)], dim=1
        ),
        action_mask=torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), stack(step_action)], dim=1),
        feedback_mask=torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), stack(step_fb)], dim=1),
        feedback=torch.cat(
            [prompt_ids.new_zeros(bsz, plen, policy.hidden_size, dtype=torch.float32), stack(step_vec)], dim=1
        ),
        noise=torch.cat(
            [prompt_ids.new_zeros(bsz, plen, policy.hidden_size, dtype=torch.float32), stack(step_noise)],
            dim=1,
        )
        if sigma > 0
        else None,
        logprobs=torch.cat(
            [prompt_ids.new_zeros(bsz, plen, dtype=torch.float64), stack(step_logp).double()], dim=1
        ),
        prompt_length=plen,
        temperature=temperature if temperature > 0 else 1.0,
        noise_std=sigma,
    )


@torch.no_grad()
def complete(
    policy: NeuralesePolicy,
    prompts: list,
    max_new_tokens: int,
    temperature: float = 0.0,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[list[str], list[int]]:
    """Answer texts and generated positions (thoughts + answer tokens) for `prompts`, in batches."""
    texts: list[str] = []
    positions: list[int] = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = policy.encode(prompts[start : start + batch_size])
        ro = generate_rollout(policy, ids, mask, max_new_tokens, temperature, generator)
        texts.extend(policy.decode(ro))
        positions.extend(ro.generated_positions.tolist())
    return texts, positions
