"""An oracle of the neuralese contract (DESIGN.md and README.md, "Neuralese mechanics"), written from the
contract alone and independent of the framework's rollout, recompute, modes and feedback code.

It takes one prompt at a time, unpadded, and fills one position at a time; every step is a fresh forward
of the plain Hugging Face model over `inputs_embeds` (no KV cache), and every thought is computed by hand
from that forward's `hidden_states` and the feedback weights (the tensors `feedback.safetensors` holds,
by their names there):

    f_t     = P(x_t) (+ sigma * eps)            the thought read off position t (Gaussian noise eps)
    x_t     = n(h_t^(l)), n(h) = h / rms(h) * rms(E)          space `hidden` (l: an index, or `mix`)
            = w_t @ E, w_t = softmax(z_t / tau)               space `embedding` (`mix`: a learned mix of both)
              or softmax((log softmax(z_t) + g) / tau), g ~ Gumbel, or the mean one-hot of m tokens ~ softmax(z_t / tau)
    e_{t+1} = E[x_{t+1}] + tanh(lambda) * f_t   the input of a feedback position (`latent_only`: f_t)

E is the token embeddings the model reads: its embedding layer's output for every token (a scaled
embedding, as Gemma's, multiplies its table by sqrt(D)). The framework fixes rms(E) at switch-on (the
adapter's `target_rms`, saved with its weights); the policies held to the oracle are untrained, so the
two agree. A thought enters every position whose output
is read: latent mode's K thought positions (the reserved thought token's embedding plus the thought),
every generated position in hybrid and channel mode (channel mode feeds W_out s_t, s_t = a * s_{t-1} +
W_in f_t, s = 0 before the first), never a prompt position, and not an eos or the last position
(nothing reads their outputs). Refine mode fills its
span in T parallel passes, pass tau feeding each position the thought of pass tau-1's state at the
position before it (the prompt's last state for the first position; pass 1 feeds only that one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Step:
    """One generated position, as the oracle fills it."""

    token: int  # its input token (the thought token at a thought position)
    logp: float  # the sampled token's log-prob (0 at a thought position), plus a sampled thought's density
    fed: torch.Tensor | None  # the vector added to its input under the gate (None: no feedback)
    sampled: bool  # its token was sampled (not a thought position)
    thought: torch.Tensor | None = None  # the thought f drawn there, when it is not what was fed (channel)


@dataclass
class Given:
    """What the oracle is handed instead of choosing, by generated position: a sampled rollout row's tokens
    and thought draws (to score it), or the thoughts to feed (the shuffled control; drawn by nobody)."""

    tokens: list[int] | None = None
    draws: torch.Tensor | None = (
        None  # [G, ...] the thoughts' draws: eps [G, D], Gumbel g [G, V] or tokens [G, m]
    )
    thoughts: list[torch.Tensor] | None = None


class Oracle:
    """The contract, read off a plain causal LM, the feedback config (neuralese.json's `neuralese`
    mapping) and the feedback weights (feedback.safetensors' tensors)."""

    def __init__(
        self, model, cfg: dict, weights: dict[str, torch.Tensor], thought_id: int, eos: set[int], pad: int
    ):
        self.model, self.cfg = model.eval(), cfg
        self.w = {k: v.detach().double() for k, v in weights.items()}
        embedding = (
            model.get_input_embeddings()
        )  # E[x]: what the model reads for token x (its scale included)
        self.E = embedding(torch.arange(embedding.num_embeddings)).detach().float()
        self.thought_id, self.eos, self.pad = thought_id, eos, pad

    @torch.no_grad()
    def forward(self, inputs: list[torch.Tensor]):
        """Logits [T, V] and hidden states (n_layers + 1 of [T, D]) of one unpadded sequence of inputs."""
        out = self.model(inputs_embeds=torch.stack(inputs)[None].float(), output_hidden_states=True)
        return out.logits[0].double(), [h[0].double() for h in out.hidden_states]

    @property
    def sampler(self) -> str:
        """What makes a thought random: Gaussian noise on f, or sampled embedding weights (or nothing)."""
        if self.cfg["noise_std"] > 0:
            return "gaussian"
        return self.cfg["embedding_weights"] if self.cfg["space"] in ("embedding", "mix") else "softmax"

    def weights(self, z: torch.Tensor, draw: torch.Tensor | None) -> torch.Tensor:
        """Embedding weights [V]: softmax(z / tau); Gumbel-softmax of y = log softmax(z) + g; or the mean
        one-hot of m sampled tokens."""
        tau = self.cfg["thought_temperature"]
        if draw is None or self.sampler in ("softmax", "gaussian"):
            return torch.softmax(z / tau, -1)
        if self.sampler == "gumbel":
            return torch.softmax((torch.log_softmax(z, -1) + draw.double()) / tau, -1)
        return F.one_hot(draw, z.shape[-1]).double().mean(0)

    def thought(self, out, t: int, draw: torch.Tensor | None = None) -> torch.Tensor:
        """f_t [D] read off position t of a forward's output (with its draw, when sampled)."""
        logits, states = out
        cfg, w = self.cfg, self.w
        parts = {}
        if cfg["space"] in ("hidden", "mix"):
            if cfg["layer"] == "mix":  # a softmax over every layer's output, each RMS-normalised
                mix = torch.softmax(w["layer_logits"], 0)
                h = sum(m * s[t] / rms(s[t]) for m, s in zip(mix, states[1:]))
            else:
                h = states[cfg["layer"]][t]
            parts["hidden"] = h / rms(h) * rms(self.E.double())
        if cfg["space"] in ("embedding", "mix"):
            parts["embedding"] = self.weights(logits[t], draw) @ self.E.double()
        if cfg["space"] == "mix":
            m = torch.sigmoid(w["mix_logit"])
            x = (1 - m) * parts["embedding"] + m * parts["hidden"]
        else:
            x = parts[cfg["space"]]
        f = self.project(x)
        return f + cfg["noise_std"] * draw.double() if draw is not None and self.sampler == "gaussian" else f

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """P: the identity, W x + b, or the residual MLP x + W2 gelu(W1 x + b1) + b2."""
        w, kind = self.w, self.cfg["projection"]
        if kind == "identity":
            return x
        if kind == "linear":
            return w["proj.weight"] @ x + w["proj.bias"]
        hidden = F.gelu(w["proj.up.weight"] @ x + w["proj.up.bias"])
        return x + w["proj.down.weight"] @ hidden + w["proj.down.bias"]

    def enter(self, token: int, fed: torch.Tensor | None) -> torch.Tensor:
        """The input of a position: E[x], or with a thought E[x] + tanh(lambda) * fed (or fed alone)."""
        if fed is None:
            return self.E[token]
        if self.cfg["input"] == "latent_only":
            return fed.float()
        return (self.E[token].double() + torch.tanh(self.w["gate_logit"]) * fed).float()

    def density(self, out, t: int, draw: torch.Tensor | None) -> float:
        """The log-probability of a sampled thought's draw at position t: log N(sigma * eps; 0, sigma^2 I),
        sum_i log Gumbel(g_i; 0, 1), or the m tokens' log-probs under softmax(z / tau) (0 unsampled)."""
        if draw is None or self.sampler == "softmax":
            return 0.0
        if self.sampler == "gaussian":
            sigma, d = self.cfg["noise_std"], draw.numel()
            return float(
                -0.5 * draw.double().pow(2).sum() - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)
            )
        if self.sampler == "gumbel":
            g = draw.double()
            return float((-g - torch.exp(-g)).sum())
        return float(torch.log_softmax(out[0][t] / self.cfg["thought_temperature"], -1)[draw].sum())

    def pick(
        self, logits: torch.Tensor, temperature: float, given: Given | None, i: int
    ) -> tuple[int, float]:
        """The token at generated position i (greedy, or the given one) and its log-prob; greedy
        log-probs are at temperature 1."""
        logp = torch.log_softmax(logits / (temperature or 1.0), -1)
        token = int(logp.argmax()) if given is None or given.tokens is None else given.tokens[i]
        return token, float(logp[token])

    # ------------------------------------------------------------------ modes

    def run(
        self, prompt: list[int], max_new: int, temperature: float = 0.0, given: Given | None = None
    ) -> list[Step]:
        mode = self.cfg["mode"]
        inputs = [self.E[x] for x in prompt]
        if mode == "refine" and self.cfg["refine_over"] == "answer":
            return self.refine_answer(inputs, max_new, temperature, given)
        if mode == "refine":
            steps, inputs = self.refine_thoughts(inputs)
            return steps + self.decode(inputs, 0, max_new, False, temperature, given, len(steps))
        thoughts = self.cfg["num_thoughts"] if mode == "latent" else 0
        return self.decode(inputs, thoughts, max_new, mode != "latent", temperature, given)

    def decode(self, inputs, thoughts: int, max_new: int, feeds_answer: bool, temperature, given, offset=0):
        """`thoughts` thought positions, then at most `max_new` answer tokens, one fresh forward each."""
        inputs, steps, state = list(inputs), [], None
        out = self.forward(inputs)
        total = thoughts + max_new
        for i in range(total):
            thinking = i < thoughts
            token, logp = (
                (self.thought_id, 0.0) if thinking else self.pick(out[0][-1], temperature, given, offset + i)
            )
            ends = not thinking and token in self.eos
            fed = f = None
            if (thinking or feeds_answer) and not ends and i < total - 1:
                if given is not None and given.thoughts is not None:
                    fed = f = given.thoughts[offset + i]
                else:
                    draw = None if given is None or given.draws is None else given.draws[offset + i]
                    fed = f = self.thought(out, -1, draw)
                    logp += self.density(out, -1, draw)
                if self.cfg["mode"] == "channel":
                    fed, state = self.channel(f, state)
            steps.append(Step(token, logp, fed, not thinking, f))
            if ends or i == total - 1:
                break
            inputs.append(self.enter(token, fed))
            out = self.forward(inputs)
        return steps

    def channel(self, f: torch.Tensor, state: torch.Tensor | None):
        """s_t = a * s_{t-1} + W_in f_t (s = 0 before the first generated position); fed: W_out s_t."""
        w = self.w
        state = torch.zeros(w["channel.write.weight"].shape[0], dtype=f.dtype) if state is None else state
        state = torch.sigmoid(w["channel.retention.logit"]) * state + w["channel.write.weight"] @ f
        return w["channel.read.weight"] @ state, state

    def refine_thoughts(self, prompt_inputs):
        """K thought positions in T passes; returns their steps (the last pass's thoughts) and the inputs
        the answer is then written after."""
        K, T, p = self.cfg["num_thoughts"], self.cfg["refine_passes"], len(prompt_inputs)
        first = self.thought(self.forward(prompt_inputs), -1)
        prev = None  # the previous pass's forward over prompt + span
        for _ in range(T):
            fed = [first] + [None if prev is None else self.thought(prev, p + u - 1) for u in range(1, K)]
            span = [self.enter(self.thought_id, f) for f in fed]
            prev = self.forward(prompt_inputs + span)
        return [Step(self.thought_id, 0.0, f, False) for f in fed], prompt_inputs + span

    def refine_answer(
        self, prompt_inputs, n: int, temperature: float = 0.0, given: Given | None = None
    ) -> list[Step]:
        """A greedy draft of n tokens (the first greedy token, padding after), refined in T passes: each
        later pass's tokens are the previous pass's greedy next tokens; the answer is read off the last
        (greedy, or the given tokens scored at `temperature`)."""
        T, p = self.cfg["refine_passes"], len(prompt_inputs)
        prompt_out = self.forward(prompt_inputs)
        z0 = prompt_out[0][-1]
        draft = [int(z0.argmax())] + [self.pad] * (n - 1)
        prev = None
        for _ in range(T):
            fed = [self.thought(prompt_out, -1)] + [
                None if prev is None else self.thought(prev, p + u - 1) for u in range(1, n)
            ]
            prev = self.forward(prompt_inputs + [self.enter(x, f) for x, f in zip(draft, fed)])
            draft = draft[:1] + prev[0][p : p + n - 1].argmax(-1).tolist()
        scores = [z0] + list(prev[0][p : p + n - 1])
        steps = []
        for u in range(n):
            token, logp = self.pick(scores[u], temperature, given, u)
            ends = token in self.eos
            steps.append(Step(token, logp, None if ends or u == n - 1 else fed[u], True))
            if ends:
                break
        return steps


def rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()
