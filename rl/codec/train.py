"""`neuralese codec train RECIPE.yaml`: train a text codec and measure how well it writes text back.

Launch: `neuralese codec train RECIPE.yaml [--set codec.chunk_tokens=8 ...] [--out DIR]`.

Level 1 builds a word-level tokenizer from the text (neuralese.tiny, the tokenizer of tiny models), cuts
each text into chunks of `chunk_tokens` tokens and trains the encoder and decoder together on the
cross-entropy of every token of the chunk, decoded from its one code. Level 2 (`codec.base` set)
cuts the text into chunks of n1 * n2 tokens and trains only its own encoder and decoder, through
the frozen level 1. AdamW with a cosine schedule; batches are drawn with the run's seed.

The report (`report.json` in the folder, and the command's JSON line) measures the reconstruction
on the training chunks and on the held-out ones (a progress bar with the loss shows on stderr while it
trains): `token_accuracy` (the text tokens written back
right, padding left out), `chunk_exact` (chunks written back whole, padding included), `codes_used`
(FSQ: distinct codes the held-out text takes), `bits_per_token` (FSQ: log2 of the code vocabulary over
the tokens per code, what a code can tell about each token) and `train_wall_s`, the training time on
this machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import get_scheduler

from neuralese.codec.data import chunk_texts, load_texts
from neuralese.codec.model import CONFIG, Codec, load_codec
from neuralese.config import RunConfig, validate
from neuralese.console import Console
from neuralese.io import atomic_dir, check_output_dir, check_replaceable
from neuralese.tiny import build_tokenizer

MEASURE_BATCH = 2048
TRAIN_MEASURED = 4096  # training chunks measured (all of them would only repeat the same number, slower)


def train_codec(cfg: RunConfig) -> Path:
    """Train the codec `cfg.codec` describes and write its folder; returns the folder."""
    validate(cfg)  # a config built in Python gets the recipe's checks
    c = cfg.codec
    what = "the codec folder (codec.output_dir, --out)"
    out = check_output_dir(c.output_dir or Path(cfg.output_dir) / "codec", what)
    check_replaceable(out, what, CONFIG)
    base = (
        load_codec(c.base, key="codec.base") if c.base else None
    )  # before the text: a bad base shows at once
    texts = load_texts(cfg)
    torch.manual_seed(cfg.seed)
    if base is None:
        tokenizer = build_tokenizer(texts.train + texts.held_out)  # as stage 0 builds a tiny model's
        codec = Codec(c, vocab_size=len(tokenizer))
        codec.tokenizer = tokenizer
    else:
        codec = Codec(c, base=base)
    train, train_stats = chunk_texts(texts.train, codec.tokenizer, codec.tokens_per_code)
    held, held_stats = chunk_texts(texts.held_out, codec.tokenizer, codec.tokens_per_code)
    start = time.perf_counter()
    losses = fit(codec, train, cfg)
    wall = time.perf_counter() - start
    report = {
        "level": codec.level,
        "tokens_per_code": codec.tokens_per_code,
        "quantizer": c.quantizer,
        "code_width": codec.code_width,
        "num_codes": codec.num_codes,
        "bits_per_token": None if codec.fsq is None else round(codec.fsq.bits / codec.tokens_per_code, 3),
        "text": texts.source,
        "train": {**train_stats, "chunks": len(train), **measure(codec, train[:TRAIN_MEASURED])},
        "held_out": {**held_stats, "chunks": len(held), **measure(codec, held)},
        "train_wall_s": round(wall, 1),
        "steps": c.max_steps,
        "loss": losses,
    }
    if base is not None:
        report["base_held_out"] = measure(base, held.view(-1, base.tokens_per_code))
    with atomic_dir(out) as tmp:
        codec.save(tmp, report)
    return out


def fit(codec: Codec, chunks: torch.Tensor, cfg: RunConfig) -> list[tuple[int, float]]:
    """Train on random batches of `chunks` [M, N]; returns (step, loss) every twentieth of the run."""
    c = cfg.codec
    params = [p for p in codec.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
    sched = get_scheduler("cosine", opt, min(c.warmup_steps, c.max_steps), c.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    every, losses = max(1, c.max_steps // 20), []
    codec.train()
    if codec.base is not None:
        codec.base.eval()
    with Console("neuralese codec train").progress(c.max_steps, 0, "codec", "step") as bar:
        for step in range(1, c.max_steps + 1):
            batch = chunks[torch.randint(len(chunks), (c.batch_size,), generator=gen)]  # [b, N]
            logits = codec.logits(codec.encode(batch))  # [b, N, V]
            loss = F.cross_entropy(logits.flatten(0, 1), batch.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            if step % every == 0 or step == c.max_steps:
                losses.append((step, round(loss.item(), 4)))
                bar.set_postfix(loss=losses[-1][1])
    codec.eval()
    return losses


@torch.no_grad()
def measure(codec: Codec, chunks: torch.Tensor) -> dict:
    """Reconstruction of `chunks` [M, N]: token accuracy (padding left out), exact chunks, codes used."""
    pad = codec.tokenizer.pad_token_id
    right = real = exact = 0
    used: set[tuple[int, ...]] = set()
    for s in range(0, len(chunks), MEASURE_BATCH):
        ids = chunks[s : s + MEASURE_BATCH]
        code = codec.encode(ids)  # [b, 1, d]
        same = codec.decode(code) == ids  # [b, N]
        keep = ids != pad
        right += int((same & keep).sum())
        real += int(keep.sum())
        exact += int(same.all(-1).sum())
        if codec.fsq is not None:
            used.update(map(tuple, codec.fsq.digits(code).flatten(0, -2).tolist()))
    result = {
        "token_accuracy": round(right / max(1, real), 4),
        "chunk_exact": round(exact / max(1, len(chunks)), 4),
    }
    if codec.fsq is not None:
        result["codes_used"] = len(used)
    return result
