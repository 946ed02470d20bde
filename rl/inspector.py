"""What the thoughts do: logit lens, gate, norms and similarity of each fed-back vector.

Launch: `neuralese inspect CHECKPOINT --prompt TEXT [--out FILE.png]`.

One prompt is answered (greedy by default); each thought is then read four ways:

    lens        the top tokens of the hidden state that was fed back, read through the model's
                own output head (the final norm first when that state is pre-norm: any layer
                but the last, or the learned mix). With `layer: -1` the lens of thought i is
                exactly the model's next-token distribution at the position it came from; in
                the embedding (and mix, pause) spaces it is that distribution, the weights the
                thought's token embeddings are mixed with.
    |f|         norm of the fed-back vector f (RMS-matched to the token embeddings, projected).
    gate        |g * f| / |f| with g = tanh(lambda): the share of the thought that passes the
                gate, weighted along f's own direction (g is one vector for all positions).
    |g*f|/|e|   the gated thought against the token embedding it is added to: how loud the
                thought is next to the token.
    cos prev    cosine similarity of f with the previous thought's f: a chain that repeats
                itself reads near 1.

With `--codec-map MAP` (neuralese.codec.lens) each thought is also read as text: the map fitted from the
policy's thoughts to a codec's codes predicts a code, which the codec decodes into the N tokens the
thought stands for; the header line says how well the map fits on held-out pairs.

With a vocabulary that writes signed whole numbers as single tokens (`model.tiny.number_pieces`: MNNS's
partial sums), each thought is also shown as its weights over those values (`values`): softmax(z / tau)
for the embedding space (what the thought is a mixture of), the logit lens for the others. A thought
that holds several partial sums at once shows them all (neuralese.superposition measures it).

A mode may add columns of its own (neuralese.modes): channel mode the norm of the state fed into each
position (|s|) and the share of it kept from the position before (kept), with the retention in the
header; refine mode how far the last pass still moved each thought (Δpass).

A thought is the vector fed into a position; it comes from the hidden state one position
earlier. In latent mode the rows are the K thought positions; in hybrid mode, every
generated position that received feedback (the row's token is the one written there).
The hidden states come from one teacher-forced pass over the rollout with its recorded
feedback vectors (the last pass's inputs in refine mode): forward values equal the rollout's (see
rl/recompute.py). In refine mode the lens therefore reads the last pass's state at the position
before each thought, what a further pass would feed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from neuralese.errors import CheckpointError
from neuralese.feedback import NO_GATE
from neuralese.policy import NeuralesePolicy
from neuralese.superposition import value_tokens

VALUE_VIEW_MIN = 0.01  # weights below this are left out of the values view


@dataclass
class Thought:
    """One fed-back vector and what it reads as."""

    index: int  # 1-based thought number
    position: int  # generated position it is fed into (0 = first after the prompt)
    token: str  # the input token at that position (the thought token, or the token written)
    lens: list[tuple[str, float]]  # top tokens of the fed-back state and their probabilities
    feedback_norm: float  # |f|
    gate: float | None  # |g * f| / |f|; None without a gate (`input: latent_only`)
    token_norm: float | None  # |E[x]|, the token embedding the thought is added to (None: not used)
    thought_to_token: float | None  # |g * f| / |E[x]|; None without a gate
    cosine_prev: float | None  # cos(f, previous f); None for the first
    columns: dict[str, float | None] = field(default_factory=dict)  # the mode's own (neuralese.modes)
    codec_text: str | None = None  # what the thought reads as through a codec map (neuralese.codec.lens)
    lenses: dict[str, list[tuple[str, float]]] = field(
        default_factory=dict
    )  # the mode's own lenses (neuralese.modes)
    values: list[tuple[int, float]] = field(
        default_factory=list
    )  # weights over signed-number tokens, by value


@dataclass
class Inspection:
    """A prompt, its answer, and every thought of it."""

    prompt: str
    answer: str
    mode: str
    layer: int | str
    lens_norm: bool  # the final norm was applied before the output head
    gate_mean: float | None  # mean |tanh(lambda)| over the hidden dimension; None without a gate
    gate_max: float | None
    thoughts: list[Thought]
    cosine: torch.Tensor = field(repr=False)  # [n, n] cosine similarity between all thoughts
    mode_line: str = ""  # what the mode says about its own weights
    codec_line: str = ""  # how well the codec map fits, when one is read through


def final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    """The norm between the last decoder layer and the output head (Llama/Qwen `norm`, GPT `ln_f`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    for name in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
        if isinstance(getattr(decoder, name, None), torch.nn.Module):
            return getattr(decoder, name)
    return None


def fed_back_is_pre_norm(policy: NeuralesePolicy) -> bool:
    """Every state but transformers' last `hidden_states` entry is taken before the final norm."""
    layer, n = policy.config.layer, policy.adapter.num_hidden_states
    return layer == "mix" or layer % n != n - 1


def lens_logits(policy: NeuralesePolicy, states: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """[n, D] fed-back states -> [n, V] logits through (final norm and) the output head; and
    whether the norm was applied."""
    model = policy.model
    norm = final_norm(model) if fed_back_is_pre_norm(policy) else None
    head = model.get_output_embeddings()
    dtype = head.weight.dtype
    x = states.to(dtype)
    if norm is not None:
        x = norm(x)
    return head(x).float(), norm is not None


def read_lens(policy: NeuralesePolicy, out, positions: torch.Tensor):
    """The logits of what each thought fed into `positions` [n] (row 0 of `out`) was read from: [n, V],
    and whether the final norm was applied."""
    if policy.config.space == "hidden":
        states = policy.adapter.select(out.hidden_states)[0, positions - 1]  # [n, D] the states fed back
        return lens_logits(policy, states)  # [n, V]
    # the next-token distribution the thought's embedding part is weighted by
    final = out.hidden_states[-1][0, positions - 1]
    return policy.model.get_output_embeddings()(final).float(), False


def value_view(policy: NeuralesePolicy, logits: torch.Tensor) -> list[list[tuple[int, float]]]:
    """Per thought, its weights [n, V] over the vocabulary's signed-number tokens as (value, weight), by
    value, weights under VALUE_VIEW_MIN left out; empty lists when the vocabulary has no such token.
    The embedding space's weights are softmax(z / tau) (the mixture fed); the others' the logit lens."""
    values = value_tokens(policy.tokenizer, signed_only=True)
    if not values:
        return [[] for _ in range(logits.shape[0])]
    tau = policy.config.thought_temperature if policy.config.space != "hidden" else 1.0
    weights = torch.softmax(logits / tau, dim=-1)  # [n, V]
    ids = sorted(values, key=values.get)
    return [[(values[i], float(w[i])) for i in ids if w[i] >= VALUE_VIEW_MIN] for w in weights]


def top_tokens(policy: NeuralesePolicy, states: torch.Tensor, top_k: int) -> list[list[tuple[str, float]]]:
    """Per state [n, D] of `policy`'s fed-back space, the top tokens of its logit lens and their probabilities."""
    probs = torch.softmax(lens_logits(policy, states)[0], dim=-1)  # [n, V]
    top_p, top_ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(_show(policy.tokenizer, int(j)), float(p)) for j, p in zip(ids, ps)]
        for ids, ps in zip(top_ids, top_p)
    ]


def _show(tokenizer, token_id: int) -> str:
    """A token as text, quoted so spaces and newlines stay visible."""
    return repr(tokenizer.decode([token_id]))


@torch.no_grad()
def inspect_thoughts(
    policy: NeuralesePolicy,
    prompt: str | list[dict],
    max_new_tokens: int = 16,
    temperature: float = 0.0,
    top_k: int = 5,
    seed: int = 0,
    codec_map=None,
) -> Inspection:
    """Answer `prompt` and read every thought of the answer (see the module docstring); with a
    `codec_map` (neuralese.codec.lens), also what each thought says as text through the codec."""
    if not policy.feedback_on:
        raise CheckpointError(
            "inspect: this policy has neuralese mode 'off' (a plain model folder, or a run without "
            "feedback), so there are no thoughts to read; give a checkpoint trained with thoughts (latent, hybrid, channel, refine)"
        )
    policy.eval()
    ids, mask = policy.encode([prompt])
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    ro = policy.rollout(ids, mask, max_new_tokens, temperature, generator)
    positions = ro.feedback_mask[0].nonzero().squeeze(-1)  # [n] inputs that received a thought
    inputs = policy.mode.final_tokens(ro)  # [1, L] the tokens the thoughts were added to
    embeds = policy.embed(inputs)  # [1, L, D]
    out = policy.replay(ro)
    lens, normed = read_lens(policy, out, positions)  # [n, V]
    top_p, top_ids = torch.softmax(lens, dim=-1).topk(min(top_k, lens.shape[-1]), dim=-1)  # [n, k]
    values = value_view(policy, lens)
    f = ro.feedback[0, positions]  # [n, D] what entered, noise included
    gate = policy.adapter.gate()  # [D]
    unit = F.normalize(f, dim=-1)
    cosine = unit @ unit.T  # [n, n]
    extra = policy.mode.inspect_columns(policy, ro, positions)
    reads = codec_map.read(ro.thoughts[0, positions]) if codec_map is not None else [None] * len(positions)
    lenses = {
        name: top_tokens(owner, states, top_k)  # the mode's own lenses (cross-model: A's and B's heads)
        for name, (owner, states) in policy.mode.inspect_lenses(policy, ro, positions).items()
    }
    thoughts = [
        Thought(
            index=i + 1,
            position=int(t) - ro.prompt_length,
            token=_show(policy.tokenizer, int(inputs[0, t])),
            lens=[(_show(policy.tokenizer, int(j)), float(p)) for j, p in zip(top_ids[i], top_p[i])],
            cosine_prev=float(cosine[i, i - 1]) if i > 0 else None,
            columns={name: values[i] for name, values in extra.items()},
            codec_text=reads[i],
            lenses={name: rows[i] for name, rows in lenses.items()},
            values=values[i],
            **norms(policy, f[i], embeds[0, t]),
        )
        for i, t in enumerate(positions.tolist())
    ]
    return Inspection(
        prompt=prompt if isinstance(prompt, str) else repr(prompt),
        answer=policy.decode(ro)[0],
        mode=policy.config.mode,
        layer=policy.config.layer,
        lens_norm=normed,
        gate_mean=float(gate.abs().mean()) if policy.adapter.has_gate else None,
        gate_max=float(gate.abs().max()) if policy.adapter.has_gate else None,
        thoughts=thoughts,
        cosine=cosine.cpu(),
        mode_line=policy.mode.describe(policy),
        codec_line=codec_map.summary() if codec_map is not None else "",
    )


def norms(policy: NeuralesePolicy, f: torch.Tensor, e: torch.Tensor) -> dict[str, float]:
    """A thought f [D] fed next to the token embedding e [D]: |f|, the share that passes the gate, |e| and
    the gated thought against the token; without a gate (`input: latent_only`) the thought is the whole
    input, and only |f| applies."""
    if not policy.adapter.has_gate:
        return {"feedback_norm": float(f.norm()), "gate": None, "token_norm": None, "thought_to_token": None}
    gated = policy.adapter.gate() * f  # [D]
    e_norm = e.float().norm()
    return {
        "feedback_norm": float(f.norm()),
        "gate": float(gated.norm() / f.norm().clamp_min(1e-12)),
        "token_norm": float(e_norm),
        "thought_to_token": float(gated.norm() / e_norm.clamp_min(1e-12)),
    }


def format_table(ins: Inspection) -> str:
    """The inspection as a plain-text table for the terminal."""
    lens_how = "final norm, then output head" if ins.lens_norm else "output head (state is post-norm)"
    gate = NO_GATE if ins.gate_mean is None else f"mean {ins.gate_mean:.4f}, max {ins.gate_max:.4f}"
    lines = [
        f"prompt: {ins.prompt!r}",
        f"answer: {ins.answer!r}",
        f"mode {ins.mode}, layer {ins.layer}; lens = {lens_how}; gate |tanh(lambda)| {gate}",
        *([ins.mode_line] if ins.mode_line else []),
        *([ins.codec_line] if ins.codec_line else []),
        "",
    ]
    lens_cells = ["  ".join(f"{t} {p:.2f}" for t, p in th.lens) for th in ins.thoughts]
    width = max([len("logit lens (top tokens, prob)"), *map(len, lens_cells)])
    more = list(ins.thoughts[0].lenses) if ins.thoughts else []  # a mode's own lenses, a column each
    more_cells = {
        n: ["  ".join(f"{t} {p:.2f}" for t, p in th.lenses[n][:3]) for th in ins.thoughts] for n in more
    }
    more_w = {n: max(len(n), *map(len, cells)) for n, cells in more_cells.items()}
    tok_w = max([len("input"), *(len(th.token) for th in ins.thoughts)])
    names = list(ins.thoughts[0].columns) if ins.thoughts else []
    reads = ins.codec_line != ""
    head = (
        f"{'#':>3}  {'pos':>3}  {'input':<{tok_w}}  {'logit lens (top tokens, prob)':<{width}}  "
        f"{'|f|':>7}  {'gate':>6}  {'|g*f|/|e|':>9}  {'cos prev':>8}"
        + "".join(f"  {n:>7}" for n in names)
        + "".join(f"  {n:<{more_w[n]}}" for n in more)
        + ("  codec reads" if reads else "")
    )
    lines += [head, "-" * len(head)]
    if not ins.thoughts:
        lines.append("(no thoughts: the answer ended at its first token)")
    for th, cell in zip(ins.thoughts, lens_cells):
        cos = "-" if th.cosine_prev is None else f"{th.cosine_prev:.3f}"
        lines.append(
            f"{th.index:>3}  {th.position:>3}  {th.token:<{tok_w}}  {cell:<{width}}  "
            f"{th.feedback_norm:>7.3f}  {_cell(th.gate, 6)}  {_cell(th.thought_to_token, 9)}  {cos:>8}"
            + "".join("        -" if th.columns[n] is None else f"  {th.columns[n]:>7.4f}" for n in names)
            + "".join(f"  {more_cells[n][th.index - 1]:<{more_w[n]}}" for n in more)
            + (f"  {th.codec_text!r}" if reads else "")
        )
    if any(th.values for th in ins.thoughts):
        lines += ["", "weights over values (signed-number tokens, >= 0.01; the share of the whole on them):"]
        for th in ins.thoughts:
            cells = "  ".join(f"{v:+d} {w:.2f}" for v, w in th.values)
            lines.append(f"{th.index:>3}  [{sum(w for _, w in th.values):.2f}]  {cells}")
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    """A gate reading for the table: `n/a` where there is no gate."""
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.4f}"


# The formats matplotlib's Agg canvas writes, told apart by the file name's suffix.
PICTURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def plot(ins: Inspection, path: str | Path) -> Path:
    """A PNG: logit-lens heat map with token labels, norms, gate, and the thought-to-thought
    cosine matrix. Drawn with matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    n = len(ins.thoughts)
    if n == 0:  # hybrid mode, and the answer ended at its first token
        fig = plt.figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, f"{ins.prompt!r} -> {ins.answer!r}: no thoughts", ha="center", va="center")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    k = max((len(th.lens) for th in ins.thoughts), default=1)
    idx = [th.index for th in ins.thoughts]
    shown = any(th.values for th in ins.thoughts)  # a third row: the weights over values
    rows = 3 if shown else 2
    fig, axes = plt.subplots(
        rows, 2, figsize=(12, (4 + 0.45 * n) * rows / 2), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    if shown:
        grid = axes[2, 0].get_gridspec()
        axes[2, 0].remove()
        axes[2, 1].remove()
        _values_panel(fig.add_subplot(grid[2, :]), ins)
    fig.suptitle(f"{ins.prompt!r} -> {ins.answer!r}   (mode {ins.mode}, layer {ins.layer})", fontsize=11)
    _lens_panel(axes[0, 0], ins, n, k)
    ax = axes[0, 1]
    width = 0.27
    gated = ins.gate_mean is not None  # without a gate the thought is the whole input: no |g*f|, no |e|
    bars = [(-width, "|f| fed-back vector", [th.feedback_norm for th in ins.thoughts])]
    if gated:
        bars += [
            (0.0, "|g*f| after the gate", [th.gate * th.feedback_norm for th in ins.thoughts]),
            (width, "|e| token embedding", [th.token_norm for th in ins.thoughts]),
        ]
    for shift, label, values in bars:
        ax.bar([i + shift for i in idx], values, width, label=label)
    top = max(max(th.feedback_norm, th.token_norm or 0.0) for th in ins.thoughts)
    ax.set(title="norms at each thought position", xlabel="thought", xticks=idx, ylim=(0, 1.3 * top))
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    ax = axes[1, 0]
    if gated:
        _gate_panel(ax, ins, idx)
    else:
        ax.set(title="how much of each thought gets through", xticks=[], yticks=[])
        ax.text(
            0.5, 0.5, textwrap.fill(f"gate {NO_GATE}", 40), ha="center", va="center", transform=ax.transAxes
        )
    ax = axes[1, 1]
    im = ax.imshow(ins.cosine.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set(title="cosine similarity between thoughts", xticks=range(n), yticks=range(n))
    ax.set_xticklabels(idx)
    ax.set_yticklabels(idx)
    for i in range(n):
        for j in range(n):
            value = float(ins.cosine[i, j])
            colour = "white" if abs(value) > 0.6 else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lens_panel(ax, ins: Inspection, n: int, k: int) -> None:
    """Rows = thoughts, columns = rank; colour = probability, text = the token."""
    grid = torch.zeros(n, k)
    for i, th in enumerate(ins.thoughts):
        for j, (_, p) in enumerate(th.lens):
            grid[i, j] = p
    ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="Greens", aspect="auto")
    for i, th in enumerate(ins.thoughts):
        for j, (t, p) in enumerate(th.lens):
            colour = "white" if p > 0.6 else "black"
            ax.text(j, i, f"{t}\n{p:.2f}", ha="center", va="center", fontsize=8, color=colour)
    ax.set(title="logit lens of each fed-back state (top tokens)", xlabel="rank", ylabel="thought")
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(j + 1) for j in range(k)])
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{th.index} ({th.token})" for th in ins.thoughts], fontsize=8)


def _gate_panel(ax, ins: Inspection, idx: list[int]) -> None:
    """How much of each thought passes the gate, and how loud it is next to the token it is added to."""
    gates, ratios = [th.gate for th in ins.thoughts], [th.thought_to_token for th in ins.thoughts]
    ax.plot(idx, gates, "o-", label="gate |g*f|/|f|")
    ax.plot(idx, ratios, "s--", label="thought vs token |g*f|/|e|")
    top = 1.2 * max(gates + ratios) + 1e-3
    ax.set(title="how much of each thought gets through", xlabel="thought", xticks=idx, ylim=(0, top))
    ax.legend(fontsize=8)


def _values_panel(ax, ins: Inspection) -> None:
    """Rows = thoughts, columns = the values any thought weighs; colour and text = the weight."""
    values = sorted({v for th in ins.thoughts for v, _ in th.values})
    grid = torch.zeros(len(ins.thoughts), len(values))
    for i, th in enumerate(ins.thoughts):
        for v, w in th.values:
            grid[i, values.index(v)] = w
    ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="Purples", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if grid[i, j] >= 0.05:
                ax.text(
                    j,
                    i,
                    f"{float(grid[i, j]):.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] > 0.6 else "black",
                )
    ax.set(title="each thought's weights over values", xlabel="value", ylabel="thought")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels([f"{v:+d}" for v in values], fontsize=7)
    ax.set_yticks(range(len(ins.thoughts)))
    ax.set_yticklabels([str(th.index) for th in ins.thoughts], fontsize=8)
