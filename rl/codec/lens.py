"""What a thought says as text: a map from a policy's thoughts to a codec's codes, fitted on paired states.

Launch: `neuralese codec fit-map CHECKPOINT CODEC --env NAME [--n N] --out MAP`, then
        `neuralese inspect CHECKPOINT --prompt TEXT --codec-map MAP`.

The logit lens reads one token out of a thought; a codec lens reads N (the codec's tokens per code).
Pairs come from the policy's own greedy answers to `n` prompts of an environment: at every written
position t, the thought the adapter makes from the state before t,

    f_t = P(x(src_{t-1}))        (in hybrid mode exactly the vector fed into t; neuralese.feedback)

is paired with the codec's code of the text the policy writes from t on (its first N tokens, padded).
A ridge regression maps f_t to that code's values; a prediction is snapped to the nearest FSQ code (a
continuous codec takes it as it is) and decoded by the codec into text.

The fit is measured on the pairs of held-out prompts (the last fifth): R^2 of the code values, the
share of codes hit exactly, of chunks written back exactly and of their tokens, each beside what the
most common code of the fitted pairs scores (a map that knows nothing). In latent mode the pairs are
written positions and the thoughts are not, so what `inspect` reads at a thought position is what
the map would read if that state were followed by text: a reading, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from neuralese.codec.model import Codec, load_codec
from neuralese.envs import load_split, make_env
from neuralese.errors import CheckpointError
from neuralese.io import read_json, read_safetensors, write_json
from neuralese.policy import NeuralesePolicy

MAP_CONFIG = "map.json"
MAP_WEIGHTS = "map.safetensors"
RIDGE = 1e-3  # relative to the mean feature variance: enough to keep a rank-poor X^T X solvable
HELD_OUT = 0.2


@dataclass
class CodecMap:
    """f [.., D] -> code [.., d]: an affine map (weight [D + 1, d], the last row the bias) and its codec."""

    weight: torch.Tensor
    codec: Codec
    report: dict

    def predict(self, f: torch.Tensor) -> torch.Tensor:
        """[n, D] thoughts -> [n, d] codes (snapped to the FSQ grid)."""
        code = torch.cat([f.float(), f.new_ones(f.shape[0], 1)], -1) @ self.weight.to(f.device)
        return self.codec.fsq.snap(code) if self.codec.fsq is not None else code.clamp(-1, 1)

    @torch.no_grad()
    def read(self, f: torch.Tensor) -> list[str]:
        """The text each thought [n, D] maps to."""
        if f.shape[0] == 0:
            return []
        ids = self.codec.decode(self.predict(f.cpu())[:, None])  # [n, N]
        return [self.codec.tokenizer.decode(row, skip_special_tokens=True) for row in ids.tolist()]

    def summary(self) -> str:
        """One line on how well the map fits (for `inspect`)."""
        h = self.report["held_out"]
        exact = (
            f"codes exact {h['code_exact']:.3f} (most common code {h['baseline_code_exact']:.3f}), "
            if "code_exact" in h
            else ""
        )
        return (
            f"codec map: {self.report['pairs']} pairs from {self.report['env']}; held out: R^2 {h['r2']:.3f}, {exact}"
            f"chunks exact {h['chunk_exact']:.3f} (most common {h['baseline_chunk_exact']:.3f}), "
            f"tokens {h['token_accuracy']:.3f}"
        )

    def save(self, folder: Path) -> None:
        save_file({"weight": self.weight.contiguous()}, str(folder / MAP_WEIGHTS))
        write_json(
            folder / MAP_CONFIG, {"codec": str(Path(self.report["codec"]).resolve()), "report": self.report}
        )


def load_map(path: str | Path) -> CodecMap:
    """A map folder written by `neuralese codec fit-map`."""
    path = Path(path)
    if path.is_file():
        raise CheckpointError(
            f"codec map {str(path)!r} is a file; expected the folder `neuralese codec fit-map` writes"
        )
    meta = read_json(path / MAP_CONFIG, "codec map config (written by `neuralese codec fit-map`)")
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("codec"), str)
        or not isinstance(meta.get("report"), dict)
    ):
        raise CheckpointError(
            f"{path / MAP_CONFIG}: expected a JSON object with 'codec' (a folder) and 'report'"
        )
    codec = load_codec(meta["codec"])
    weight = read_safetensors(path / MAP_WEIGHTS, "codec map weights").get("weight")
    if weight is None or weight.dim() != 2 or weight.shape[1] != codec.code_width:
        raise CheckpointError(
            f"{path / MAP_WEIGHTS}: expected a 'weight' [D + 1, {codec.code_width}] for the codec "
            f"{meta['codec']}; the folder is damaged or mixed"
        )
    return CodecMap(weight, codec, meta["report"])


@torch.no_grad()
def paired_states(
    policy: NeuralesePolicy, codec: Codec, prompts: list, max_new_tokens: int, batch_size: int = 64
):
    """(thoughts f_t [M, D], chunk ids [M, N] of the text written from t, prompt of each pair [M])."""
    feats, chunks, owner = [], [], []
    tok, n = codec.tokenizer, codec.tokens_per_code
    for start in range(0, len(prompts), batch_size):
        ids, mask = policy.encode(prompts[start : start + batch_size])
        ro = policy.rollout(ids, mask, max_new_tokens, 0.0)
        out = policy.replay(ro)
        f = policy.adapter.vector(policy.thought_source(out), policy.embedding_table)  # [B, L, D]: into t + 1
        for b in range(ro.input_ids.shape[0]):
            written = ro.action_mask[b].nonzero().squeeze(-1).tolist()
            for j, t in enumerate(written):
                text = policy.tokenizer.decode(
                    ro.input_ids[b, written[j:]].tolist(), skip_special_tokens=True
                )
                if not text:  # eos: nothing is written from here on
                    continue
                piece = tok(text, add_special_tokens=False)["input_ids"][:n]
                feats.append(f[b, t - 1])
                chunks.append(piece + [tok.pad_token_id] * (n - len(piece)))
                owner.append(start + b)
    if not feats:
        raise CheckpointError(
            "codec fit-map: the policy wrote no text on these prompts, so there is nothing to pair"
        )
    return torch.stack(feats).cpu().float(), torch.tensor(chunks), torch.tensor(owner)


def fit_map(
    policy: NeuralesePolicy,
    codec: Codec,
    env_name: str,
    env_args: dict,
    n: int,
    seed: int,
    max_new_tokens: int,
    codec_path: str,
) -> CodecMap:
    """Fit the map on the pairs of `n` train prompts of the environment; measure it on the last fifth."""
    rows = load_split(make_env(env_name, env_args), "train", n, seed, env_name)
    x, chunk, owner = paired_states(policy, codec, list(rows["prompt"]), max_new_tokens)
    y = codec.encode(chunk)[:, 0]  # [M, d] the codes the text takes
    fit = owner < round(len(rows) * (1 - HELD_OUT))
    if fit.all() or not fit.any():
        raise CheckpointError(
            f"codec fit-map: --n {n} prompts leave no held-out or no fitted pairs; give more"
        )
    xa = torch.cat([x, torch.ones(len(x), 1)], -1)  # [M, D + 1]
    gram = xa[fit].T @ xa[fit]
    ridge = RIDGE * gram.diagonal()[:-1].mean() * torch.eye(len(gram))
    weight = torch.linalg.solve(gram + ridge, xa[fit].T @ y[fit])  # [D + 1, d]
    result = CodecMap(weight, codec, {})
    result.report = {
        "codec": codec_path,
        "env": f"{env_name} {env_args or ''}".strip(),
        "prompts": len(rows),
        "pairs": len(x),
        "fitted_pairs": int(fit.sum()),
        "held_out": quality(result, x[~fit], y[~fit], chunk[~fit], y[fit]),
    }
    return result


@torch.no_grad()
def quality(m: CodecMap, x, y, chunk, y_fit) -> dict:
    """How the map does on held-out pairs, and what the most common fitted code scores there."""
    pred = m.predict(x)
    r2 = (
        1
        - (y - (torch.cat([x, torch.ones(len(x), 1)], -1) @ m.weight)).pow(2).sum()
        / (y - y.mean(0)).pow(2).sum()
    )
    common = y_fit.unique(dim=0, return_counts=True)
    top = common[0][common[1].argmax()]  # [d] the most common code among the fitted pairs
    pad = m.codec.tokenizer.pad_token_id

    def chunks_right(code):
        ids = m.codec.decode(code[:, None])  # [M, N]
        same, keep = ids == chunk, chunk != pad
        return float(same.all(-1).float().mean()), float((same & keep).sum() / keep.sum().clamp_min(1))

    exact, tokens = chunks_right(pred)
    base_exact, _ = chunks_right(top.expand_as(pred))
    out = {
        "pairs": len(x),
        "r2": round(float(r2), 4),
        "chunk_exact": round(exact, 4),
        "token_accuracy": round(tokens, 4),
        "baseline_chunk_exact": round(base_exact, 4),
    }
    if m.codec.fsq is not None:
        hit = m.codec.fsq.index(pred) == m.codec.fsq.index(y)
        out.update(
            code_exact=round(float(hit.float().mean()), 4),
            baseline_code_exact=round(float((y == top).all(-1).float().mean()), 4),
        )
    return out
