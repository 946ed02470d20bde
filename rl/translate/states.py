"""Fed-back states of several models reading the same texts, paired by character offsets.

A model's state at a token is what rl/feedback.py would feed back from it: the hidden state of
`neuralese.layer`, rescaled to the RMS of the model's token embeddings (the space its inputs live
in). The state is computed by a `FeedbackAdapter` with the identity projection, so it is the
adapter's own `x(src)` and not a copy of its formula.

Two tokenizers cut one text differently, so a position is named by the character its token ends
at: positions where every tokenizer ends a token at the same character have read the same prefix
of the text, and their states are a pair. Tokens with an empty span (special tokens) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from neuralese.config import NeuraleseConfig
from neuralese.errors import AlignmentError, ConfigError
from neuralese.feedback import FeedbackAdapter, Source
from neuralese.inspector import final_norm


@dataclass
class Reader:
    """One model reading texts: its name (in messages and reports), model, tokenizer and adapter."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    adapter: FeedbackAdapter

    @classmethod
    def build(cls, name: str, model, tokenizer, layer: int) -> Reader:
        if not isinstance(layer, int):
            raise ConfigError(
                f"key 'neuralese.layer' is {layer!r}: a translator needs one fixed layer (a learned mix "
                "has no weights until RL trains it)"
            )
        if not getattr(tokenizer, "is_fast", False):
            raise AlignmentError(
                f"{name}: its tokenizer is not a fast tokenizer, so it gives no character offsets"
            )
        cfg = replace(NeuraleseConfig(), mode="latent", layer=layer, projection="identity", space="hidden")
        model.eval()
        device = model.get_input_embeddings().weight.device
        return cls(name, model, tokenizer, FeedbackAdapter.for_model(cfg, model).to(device))

    @property
    def width(self) -> int:
        return self.adapter.hidden_size

    def token_ends(self, texts: list[str]) -> list[list[int]]:
        """Per text, the end character of each token the model reads (empty spans included as -1)."""
        enc = self.tokenizer(texts, return_offsets_mapping=True, add_special_tokens=True)
        return [[e if e > s else -1 for s, e in offsets] for offsets in enc["offset_mapping"]]

    @torch.no_grad()
    def states(self, texts: list[str], batch_size: int) -> list[torch.Tensor]:
        """Per text, the fed-back state of every token: [T_i, D] float32."""
        out: list[torch.Tensor] = []
        embed = self.model.get_input_embeddings().weight
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            # Right padding: real positions keep positions 0..T-1 and never attend to the pads after them.
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, padding_side="right").to(
                embed.device
            )
            # Only ids and mask: some tokenizers add token_type_ids, which a causal LM does not take.
            res = self.model(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                output_hidden_states=True,
                return_dict=True,
            )
            hidden = self.adapter.select(res.hidden_states)  # [B, T, D]
            x = self.adapter.vector(Source(hidden=hidden, logits=None), embed)  # [B, T, D], RMS-matched
            for row, n in zip(x, enc["attention_mask"].sum(1).tolist()):
                out.append(row[:n].float().cpu())  # the fits run on the CPU, in float64 where it matters
        return out

    @torch.no_grad()
    def lens(self, states: torch.Tensor) -> torch.Tensor:
        """[N, D] states -> [N] top-1 token of this model's logit lens: its output head, after its final
        norm when the fed-back layer is before that norm (every layer but the last `hidden_states`)."""
        n = self.adapter.num_hidden_states
        head = self.model.get_output_embeddings()
        x = states.to(head.weight.device, head.weight.dtype)
        norm = final_norm(self.model) if self.adapter.cfg.layer % n != n - 1 else None
        if norm is not None:
            x = norm(x)
        return head(x).argmax(-1).cpu()


def shared_ends(ends: list[list[int]]) -> list[list[int]]:
    """For one text read by several tokenizers (`ends[m]`: the end character of each of model m's
    tokens, -1 for an empty span): per model, the token indices whose end character every model shares.

    >>> shared_ends([[1, 2, 3], [2, 3]])
    [[1, 2], [0, 1]]
    """
    common = set.intersection(*({e for e in per if e >= 0} for per in ends))
    return [[i for i, e in enumerate(per) if e in common] for per in ends]


@dataclass
class Paired:
    """States of the same text positions in every model: `states[m]` is [N, D_m]."""

    states: list[torch.Tensor]
    texts: int  # texts they were read from
    tokens: list[int]  # tokens each model read in all
    answer: torch.Tensor | None = None  # [N] bool: the position's token ends at or after the prompt's end

    @property
    def positions(self) -> int:
        return len(self.states[0])


def paired_states(
    readers: list[Reader],
    texts: list[str],
    batch_size: int,
    min_positions: int,
    what: str,
    prompt_chars: list[int] | None = None,
) -> Paired:
    """Every model's states at the positions all of them share (see `shared_ends`), stacked.

    prompt_chars: per text, the length of its prompt; then `answer` marks the positions that predict the
    answer (their token ends at or after the prompt's last character). Fewer than `min_positions`
    shared positions is an AlignmentError naming the models and how many tokens each read: their
    tokenizers do not cut `what` at common characters.
    """
    ends = [r.token_ends(texts) for r in readers]
    states = [r.states(texts, batch_size) for r in readers]
    picked: list[list[torch.Tensor]] = [[] for _ in readers]
    answer: list[bool] = []
    for t in range(len(texts)):
        keep = shared_ends([e[t] for e in ends])
        for m, idx in enumerate(keep):
            picked[m].append(states[m][t][idx])
        if prompt_chars is not None:
            answer.extend(ends[0][t][i] >= prompt_chars[t] for i in keep[0])
    stacked = [torch.cat(p) for p in picked]
    tokens = [sum(len(x) for x in s) for s in states]
    if len(stacked[0]) < min_positions:
        read = ", ".join(f"{r.name} read {n} tokens" for r, n in zip(readers, tokens))
        raise AlignmentError(
            f"{what}: only {len(stacked[0])} positions where every tokenizer ends a token at the same "
            f"character ({read}); need at least {min_positions} (translate.min_aligned_positions): "
            f"these tokenizers cut the text at too few common characters to pair their states"
        )
    return Paired(stacked, len(texts), tokens, torch.tensor(answer) if prompt_chars is not None else None)
