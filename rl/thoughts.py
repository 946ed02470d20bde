"""What a thought is made of, and the exact log-probability of a sampled one. Pure tensor functions.

A thought is computed from its source, the position before it: a hidden state h [..., D]
and the next-token logits z [..., V] read from the final hidden state. Three spaces:

    hidden      n(h): the hidden state, rescaled to the RMS of the token embeddings
    embedding   w @ E: a mixture of token embeddings with weights w over the vocabulary, a
                vector the model already knows how to read. Deterministic: w = softmax(z / tau),
                the expected next-token embedding (HRPO, soft thinking); tau -> 0 gives the
                greedy token's embedding, i.e. token chain-of-thought.
    mix         (1 - m) * (w @ E) + m * n(h), with a learned per-dimension share m.

A thought may be sampled, so that the samples of a group differ in their thoughts and not
only in their answer tokens. Each sampler has an exact log-probability, which joins the
policy's:

    gaussian    f~ = f + sigma * eps, eps ~ N(0, I): log N(f~; f, sigma^2 I) over D.
    gumbel      y = log softmax(z) + g, g ~ Gumbel(0, 1) per vocabulary entry, w = softmax(y / tau)
                (Gumbel-softmax soft tokens, SofT-GRPO). The action is the perturbed vector y,
                whose density is prod_i Gumbel(y_i - log pi_i); tau -> 0 gives a sampled token.
    multiplex   m tokens drawn i.i.d. from softmax(z / tau), w = their mean one-hot (Multiplex
                Thinking); the action is the token tuple, log-prob = the sum of theirs.

Densities are summed in float64: they add D or V terms, and a float32 sum would blur the
importance ratio.
"""

from __future__ import annotations

import math

import torch

GUMBEL_EPS = 1e-20  # keeps log(-log(u)) finite for u drawn at exactly 0 or 1


# ----------------------------------------------------------------------------- embedding weights


def soft_weights(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z / tau): [..., V] -> [..., V] float32."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def gumbel_weights(perturbed: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(y / tau) of perturbed log-probs y: [..., V] -> [..., V] float32."""
    return torch.softmax(perturbed.float() / temperature, dim=-1)


def multiplex_weights(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The mean one-hot of m sampled tokens: [..., m] long -> [..., V] float32."""
    onehot = torch.nn.functional.one_hot(tokens, vocab_size).float()  # [..., m, V]
    return onehot.mean(-2)


# ----------------------------------------------------------------------------- draws


def standard_gumbel(shape: torch.Size, generator: torch.Generator | None, device) -> torch.Tensor:
    """Gumbel(0, 1) draws, -log(-log u) for u ~ U(0, 1): float32 of `shape`."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log((-torch.log(u.clamp_min(GUMBEL_EPS))).clamp_min(GUMBEL_EPS))


def sample_multiplex(
    logits: torch.Tensor, temperature: float, m: int, generator: torch.Generator | None
) -> torch.Tensor:
    """m tokens drawn independently from softmax(z / tau): [..., V] -> [..., m] long."""
    probs = soft_weights(logits, temperature)
    tokens = torch.multinomial(probs.reshape(-1, probs.shape[-1]), m, replacement=True, generator=generator)
    return tokens.view(*probs.shape[:-1], m)


# ----------------------------------------------------------------------------- log-probabilities


def gaussian_logprob(sample: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(sample; mean, sigma^2 I) summed over the last dimension: [..., D] x2 -> [...] float64."""
    return standard_normal_logprob((sample.double() - mean.double()) / sigma, sigma)


def standard_normal_logprob(eps: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(sigma * eps; 0, sigma^2 I) for standard-normal draws eps: [..., D] -> [...] float64.

    >>> round(standard_normal_logprob(torch.zeros(1), 1.0).item(), 6)  # -log(sqrt(2 pi))
    -0.918939
    """
    d = eps.shape[-1]
    eps = eps.double()
    return -0.5 * eps.pow(2).sum(-1) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


def gumbel_density(g: torch.Tensor) -> torch.Tensor:
    """log prod_i Gumbel(g_i; 0, 1) = sum_i (-g_i - exp(-g_i)): [..., V] -> [...] float64.

    >>> round(gumbel_density(torch.zeros(2)).item(), 6)  # two draws at the mode: 2 * (-1)
    -2.0
    """
    g = g.double()
    return (-g - torch.exp(-g)).sum(-1)


def gumbel_logprob(perturbed: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Density of perturbed log-probs y under the policy's logits z: sum_i Gumbel(y_i - log pi_i).

    [..., V], [..., V] -> [...] float64; its gradient reaches z (the score function).
    """
    logp = torch.log_softmax(logits.double(), dim=-1)
    return gumbel_density(perturbed.double() - logp)


def multiplex_logprob(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sum of the m tokens' log-probs under softmax(z / tau): [..., V], [..., m] -> [...] float64."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [..., V]
    return logp.gather(-1, tokens).double().sum(-1)
