"""The `Rollout` record of sampled thoughts and answers, the `Sampling` settings that make one, and the
helpers every mode samples with.

`NeuralesePolicy.rollout` samples a record; how a rollout proceeds is the thought mode's
(neuralese.modes): the sequential modes fill one position at a time over a KV cache
(neuralese.modes.sequential), refine mode fills its span in parallel passes.
The record keeps everything the loss needs to recompute exactly what was sampled, whatever the
mode: token ids, masks, the sampling log-probs, the fed-back vectors and the draws behind them.
All tensors span the whole sequence (prompt then generated positions) so that position t of
every tensor refers to the same input position.

Left padding: prompts are padded on the left and position ids are given explicitly
(cumulative sum of the mask), so a padded prompt behaves like the unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

from neuralese.feedback import Draw


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
    # [B, L] float64: sampling log-prob (token + sampled thought) at loss positions, else 0. float64
    # because a thought's density sums D or V terms: its float32 value would blur the ratio.
    logprobs: torch.Tensor
    prompt_length: int  # P
    temperature: float  # log-probs are of softmax(logits / temperature); 1.0 for greedy
    sampler: str = "none"  # what made the thoughts random (FeedbackAdapter.sampler)
    # The thoughts' random draws, [B, L, ...] per tensor (zeros where no thought was drawn); refine
    # mode draws in every pass: [B, L, passes, ...]
    draw: Draw = field(default_factory=Draw)
    # What a mode records beyond these, [B, L, ...] each, named by the mode (neuralese.modes): channel mode's
    # state and drawn thoughts, refine mode's inputs of every pass
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def loss_mask(self) -> torch.Tensor:
        """[B, L] bool: positions whose log-prob is part of the policy's log-probability."""
        if self.sampler != "none":
            return self.action_mask | self.feedback_mask
        return self.action_mask

    @property
    def thoughts(self) -> torch.Tensor:
        """[B, L, D] the drawn thoughts (the actions): what was fed back (`feedback`), unless the mode
        turns a thought into something else before it enters (channel mode records them apart)."""
        return self.extra.get("thought", self.feedback)

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

    def reward_columns(self) -> dict[str, list]:
        """What every reward function receives beside the dataset's columns, one entry per sequence."""
        return {
            "completion_ids": self.completion_ids(),
            "num_thoughts": self.num_thoughts.tolist(),
            "generated_positions": self.generated_positions.tolist(),
        }

    def map(self, fn) -> Rollout:
        """The record with `fn` applied to every tensor (each has the batch first, positions second)."""
        tensors = {
            f.name: fn(getattr(self, f.name))
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(
            self, **tensors, draw=self.draw.map(fn), extra={k: fn(v) for k, v in self.extra.items()}
        )

    def select(self, index: torch.Tensor | slice) -> Rollout:
        """The rows `index` (for micro-batches)."""
        return self.map(lambda t: t[index])

    def to(self, device: torch.device | str) -> Rollout:
        return self.map(lambda t: t.to(device))


def cat_rollouts(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
    """The rows of several rollouts (of one policy and thought layout) as one record: prompts left-padded
    to the longest prompt, generated positions right-padded to the longest, as a rollout pads its own
    rows, so every row recomputes what it did alone. RAFT's round pool gathers its steps' kept samples so."""
    first = rollouts[0]
    if any((r.temperature, r.sampler) != (first.temperature, first.sampler) for r in rollouts):
        raise ValueError(
            "cat_rollouts: the rollouts were sampled at other temperatures or with other samplers"
        )
    P = max(r.prompt_length for r in rollouts)
    G = max(r.input_ids.shape[1] - r.prompt_length for r in rollouts)

    def padded(r: Rollout) -> Rollout:
        left, right = P - r.prompt_length, G - (r.input_ids.shape[1] - r.prompt_length)

        def pad(t: torch.Tensor, value=0) -> torch.Tensor:  # [B, L, ...] -> [B, left + L + right, ...]
            shape = (t.shape[0], left + t.shape[1] + right, *t.shape[2:])
            out = t.new_full(shape, value)
            out[:, left : left + t.shape[1]] = t
            return out

        return replace(r.map(pad), input_ids=pad(r.input_ids, pad_token_id), prompt_length=P)

    parts = [padded(r) for r in rollouts]
    cat = {
        f.name: torch.cat([getattr(p, f.name) for p in parts])
        for f in fields(Rollout)
        if isinstance(getattr(first, f.name), torch.Tensor)
    }
    draws = [p.draw for p in parts]
    draw = replace(
        first.draw,
        **{
            f.name: torch.cat([getattr(d, f.name) for d in draws])
            for f in fields(first.draw)
            if getattr(first.draw, f.name) is not None
        },
    )
    extra = {k: torch.cat([p.extra[k] for p in parts]) for k in first.extra}
    return replace(parts[0], **cat, draw=draw, extra=extra)


@dataclass
class Answer:
    """One answer and what made it (`NeuralesePolicy.answers`): its text, the tokens written, every
    generated position's sampling log-probability, and the thoughts fed back."""

    text: str
    """The answer text (no thoughts, no special tokens): what `generate` returns."""
    token_ids: list[int]
    """The answer tokens written, eos included."""
    logprobs: list[float]
    """Per generated position (thought positions included, 0 = the first after the prompt): the
    log-probability of what was drawn there at the sampling temperature, its token plus its thought's
    draw when thoughts are sampled; 0 where nothing was drawn (a thought position of a deterministic
    thought). Greedy answers are scored as at temperature 1."""
    thought_positions: list[int]
    """The generated positions that received a thought (their input was gated with it)."""
    thoughts: torch.Tensor
    """[len(thought_positions), D] the thought fed into each of them (noise included), on the CPU."""

    @property
    def logprob(self) -> float:
        """The answer's log-probability: the sum of `logprobs`."""
        return float(sum(self.logprobs))


def answers(ro: Rollout, texts: list[str]) -> list[Answer]:
    """Each sequence of a rollout as an `Answer` (with `texts`, its decoded answers)."""
    out = []
    P = ro.prompt_length
    for b, text in enumerate(texts):
        used = ro.attention_mask[b, P:].bool()  # [G] generated positions in use
        fed = ro.feedback_mask[b, P:] & used
        out.append(
            Answer(
                text=text,
                token_ids=ro.input_ids[b][ro.action_mask[b]].tolist(),
                logprobs=ro.logprobs[b, P:][used].tolist(),
                thought_positions=fed.nonzero().squeeze(-1).tolist(),
                thoughts=ro.thoughts[b, P:][fed].detach().float().cpu(),
            )
        )
    return out


@dataclass(frozen=True)
class Sampling:
    """How a rollout samples, carried as one record from `NeuralesePolicy.rollout` to the mode's engine."""

    max_new_tokens: int  # answer tokens at most (after a mode's thought positions)
    temperature: float = 1.0  # 0: greedy tokens, and each thought its most likely value
    generator: torch.Generator | None = None
    ignore_eos: bool = False  # keep sampling after eos (benchmarks that need a fixed length)
    # [B, S, D]: the thoughts of the first S generated positions instead of the policy's own (the
    # `shuffled` control); drawn by nobody, they add no log-prob
    thoughts: torch.Tensor | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] attention mask -> [B, T] positions counting only real tokens (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def sample_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Sample one token per row; returns (tokens [B], log-probs [B]) at the sampling temperature."""
    if temperature == 0:
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, V]
        tokens = logp.argmax(-1)
    else:
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def extend_columns(columns: dict[str, list], more: dict[str, list]) -> None:
    """Append a batch's reward columns (`Rollout.reward_columns`) to those gathered so far, in place."""
    for key, values in more.items():
        columns.setdefault(key, []).extend(values)
