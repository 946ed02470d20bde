"""`neuralese translate fit RECIPE.yaml`: fit translators between models and measure them on held-out text.

Launch: `neuralese translate fit RECIPE.yaml [--set translate.key=value ...] [--out DIR]`.

Every model in `translate.models` reads the same texts (the environment's splits, or a text file);
their fed-back states (`neuralese.layer`, neuralese.translate.states) are paired at the positions where
every tokenizer ends a token at the same character. On the fit texts' pairs this fits each kind in
`translate.kinds`; on the held-out texts' pairs it measures every ordered pair A -> B:

- `cosine`: mean cosine similarity of the translated state to B's own state at that position.
- `centered_cosine`: the same after subtracting B's mean fit state from both. B's states share a large
  common part (a translator that always answers B's mean already scores a high `cosine`); this one
  counts only what varies from position to position, and the `mean` floor scores 0 on it.
- `top1_agreement`: the share of positions where B's logit lens (B's output head, after B's final
  norm when the fed-back layer comes before it) gives the same top-1 token on the translated state as
  on B's own state. With `neuralese.layer: -1` B's own top-1 is B's greedy next token there.

`mean` rows are the floor: every position translated to B's mean fit state. With environment text
the same three numbers are also given over the answer positions alone (`answer_*`: tokens ending at
or after the prompt's last character, which predict the answer), where the next token is determined
by the problem rather than a random digit of the next operand.

The folder (`translate.output_dir`, written atomically) holds `linear/A-to-B/`, `mlp/A-to-B/`
(neuralese.translate.maps), `common/` (neuralese.translate.common) and `report.json`.
"""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuralese.config import ModelConfig, RunConfig, validate
from neuralese.errors import ConfigError
from neuralese.io import atomic_dir, check_output_dir, check_replaceable, read_text, write_json
from neuralese.models import load_model
from neuralese.translate.common import fit_common
from neuralese.translate.maps import fit_linear, fit_mlp
from neuralese.translate.states import Paired, Reader, paired_states


def row_text(row: dict) -> tuple[str, int]:
    """One environment row as the text a model reads, the prompt followed by its completion (or
    answer); and the prompt's length in characters."""
    prompt = row["prompt"]
    if isinstance(prompt, list):  # conversational: the messages' contents, one per line
        prompt = "\n".join(str(m.get("content", "")) for m in prompt)
    target = row.get("completion", row["answer"])
    return f"{prompt}{target}", len(prompt)


def read_texts(cfg: RunConfig) -> tuple[list[str], list[str], list[int] | None]:
    """(fit texts, held-out texts, each held-out prompt's length or None for a text file) from
    `translate.text_file` or the environment's splits."""
    tr = cfg.translate
    if tr.text_file is not None:
        lines = [
            line
            for line in read_text(tr.text_file, "translate.text_file", ConfigError).split("\n")
            if line.strip()
        ]
        fit, held = lines[: tr.fit_texts], lines[tr.fit_texts : tr.fit_texts + tr.held_out_texts]
        if not held:
            raise ConfigError(
                f"{tr.text_file}: {len(lines)} non-blank lines leave none to hold out after translate.fit_texts "
                f"({tr.fit_texts}); give more lines or a smaller fit_texts"
            )
        return fit, held, None
    from neuralese.envs import load_split, make_env

    env = make_env(cfg.env.name, cfg.env.args)
    train = load_split(env, "train", tr.fit_texts, cfg.seed, cfg.env.name)
    test = [
        row_text(r) for r in load_split(env, cfg.env.test_split, tr.held_out_texts, cfg.seed, cfg.env.name)
    ]
    return [row_text(r)[0] for r in train], [t for t, _ in test], [n for _, n in test]


def model_names(paths: list[str]) -> list[str]:
    """Each folder's name; `m0`, `m1`, ... when two folders share one."""
    names = [Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else [f"m{i}" for i in range(len(paths))]


def fidelity(
    pred: torch.Tensor,
    true: torch.Tensor,
    mean: torch.Tensor,
    target: Reader,
    answer: torch.Tensor | None = None,
) -> dict:
    """Cosine (plain and centred on B's mean fit state `mean` [D]) and top-1 lens agreement of translated
    states `pred` [N, D] against B's own `true` [N, D]; with `answer` [N] bool, also over those positions."""
    cosine = F.cosine_similarity(pred, true, dim=-1)  # [N]
    centered = F.cosine_similarity(pred - mean, true - mean, dim=-1)  # [N], 0 where pred == mean
    agree = (target.lens(pred) == target.lens(true)).float()  # [N]
    out = {
        "cosine": cosine.mean().item(),
        "centered_cosine": centered.mean().item(),
        "top1_agreement": agree.mean().item(),
    }
    if answer is not None and answer.any():
        out.update(
            {
                "answer_cosine": cosine[answer].mean().item(),
                "answer_centered_cosine": centered[answer].mean().item(),
                "answer_top1_agreement": agree[answer].mean().item(),
            }
        )
    return {k: round(v, 4) for k, v in out.items()}


def fit_kind(kind: str, fit: Paired, names: list[str], cfg: RunConfig) -> tuple[dict, dict, dict]:
    """Fit one kind on the fit pairs: (a map per ordered pair (i, j), the folders to save by subpath,
    fit logs)."""
    tr, pairs = cfg.translate, list(itertools.permutations(range(len(names)), 2))
    if kind == "common":
        space, spread = fit_common(
            fit.states, tr.common_width, tr.ridge, tr.common_iterations, names, {"layer": cfg.neuralese.layer}
        )
        maps = {(i, j): functools.partial(space.translate, source=i, target=j) for i, j in pairs}
        return maps, {"common": space}, {"common_spread": spread}
    maps, folders, logs = {}, {}, {}
    for i, j in pairs:
        meta = {
            "source": names[i],
            "target": names[j],
            "layer": cfg.neuralese.layer,
            "source_path": tr.models[i],
            "target_path": tr.models[j],
        }
        if kind == "linear":
            t = fit_linear(fit.states[i], fit.states[j], tr.ridge, meta)
        else:
            t, logs[f"mlp_loss/{names[i]}-to-{names[j]}"] = fit_mlp(
                fit.states[i],
                fit.states[j],
                tr.ridge,
                tr.mlp_hidden,
                tr.mlp_steps,
                tr.mlp_batch_size,
                tr.mlp_learning_rate,
                tr.mlp_weight_decay,
                cfg.seed,
                meta,
            )
        maps[i, j] = folders[f"{kind}/{names[i]}-to-{names[j]}"] = t
    return maps, folders, logs


def load_readers(cfg: RunConfig) -> list[Reader]:
    """Every model of `translate.models`, loaded through neuralese.models, ready to read states."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # reading states; the fits run on the CPU
    readers = []
    for i, (name, path) in enumerate(zip(model_names(cfg.translate.models), cfg.translate.models)):
        model, tokenizer = load_model(path, ModelConfig(), device=device, what=f"translate.models[{i}]")
        readers.append(Reader.build(name, model, tokenizer, cfg.neuralese.layer))
    return readers


def fit_translators(cfg: RunConfig) -> tuple[Path, dict]:
    """Fit `translate.kinds` on the models' paired states; write the folder; return it and the report."""
    validate(cfg)
    tr = cfg.translate
    if len(tr.models) < 2:
        raise ConfigError(f"key 'translate.models' must list two or more model folders, got {tr.models!r}")
    out = check_output_dir(tr.output_dir or Path(cfg.output_dir) / "translate", "translate.output_dir")
    check_replaceable(out, "translate.output_dir (--out)", "report.json")
    torch.manual_seed(cfg.seed)
    readers = load_readers(cfg)
    names = [r.name for r in readers]
    fit_texts, held_texts, prompt_chars = read_texts(cfg)
    fit = paired_states(readers, fit_texts, tr.batch_size, tr.min_aligned_positions, "translate fit texts")
    held = paired_states(readers, held_texts, tr.batch_size, 1, "translate held-out texts", prompt_chars)
    means = [s.mean(0) for s in fit.states]  # [D_m] each: the `mean` floor
    floor = {
        (i, j): (lambda x, m=means[j]: m.expand(len(x), -1))
        for i, j in itertools.permutations(range(len(names)), 2)
    }
    results, folders, fit_s, logs = [], {}, {}, {}
    for kind in ("mean", *tr.kinds):
        start = time.perf_counter()
        maps, saved, log = (floor, {}, {}) if kind == "mean" else fit_kind(kind, fit, names, cfg)
        fit_s[kind] = round(time.perf_counter() - start, 3)
        folders.update(saved)
        logs.update(log)
        with torch.no_grad():
            for (i, j), fn in maps.items():
                row = fidelity(fn(held.states[i]), held.states[j], means[j], readers[j], held.answer)
                results.append({"kind": kind, "source": names[i], "target": names[j], **row})
    report = {
        "models": [
            {
                "name": r.name,
                "path": p,
                "width": r.width,
                "hidden_states": r.adapter.num_hidden_states,
                "vocab": len(r.tokenizer),
            }
            for r, p in zip(readers, tr.models)
        ],
        "layer": cfg.neuralese.layer,
        "texts": {"fit": fit.texts, "held_out": held.texts},
        "tokens": {"fit": dict(zip(names, fit.tokens)), "held_out": dict(zip(names, held.tokens))},
        "positions": {
            "fit": fit.positions,
            "held_out": held.positions,
            "held_out_answer": None if held.answer is None else int(held.answer.sum()),
        },
        "fit_s": fit_s,
        "results": results,
        "logs": logs,
    }
    with atomic_dir(out) as tmp:
        for key, thing in folders.items():
            thing.save(tmp / key)
        write_json(tmp / "report.json", report)
    return out, report
