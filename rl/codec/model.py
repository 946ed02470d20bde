"""`Codec`: n tokens to one dense token and back, in stacked levels, and the codec folder.

    level 1   ids [B, k*n]  -> E[ids] [B, k, n*e] -> encoder -> z [B, k, d] -> quantizer -> code [B, k, d]
              code          -> decoder -> [B, k, n, e] -> norm -> E^T -> logits [B, k*n, V]  (all n at once)
    level 2   ids [B, k*N]  -> level-1 codes [B, k*n2, d1] -> encoder -> code [B, k, d]
              code          -> decoder -> [B, k*n2, d1] -> level 1's quantizer -> level-1 decoder -> logits

The encoder and decoder are residual MLPs over the concatenated chunk, as in CALM's autoencoder
(Shao et al. 2025): a chunk is short, its positions are fixed, and an MLP reads all of it at once.
The quantizer is FSQ (neuralese.codec.fsq) or, for `quantizer: none`, tanh: the same range, not rounded.
A level-2 codec is trained through its frozen base: its decoder's output goes through level 1's
quantizer (straight-through) and decoder, and the loss is on the text tokens, so what level 2 is
asked to keep is exactly what level 1 needs to write the text back. A level-3 codec stands on a
level-2 one the same way.

A codec folder holds `codec.json` (the config and the shapes), `codec.safetensors` (this level's
weights), `tokenizer/` (level 1: the text tokenizer) or `base/` (level 2: the level-1 folder it
stands on), and `report.json` from training. `load_codec(path)` reads one back; a folder that is
missing a file, or whose weights do not fit its config, is a CheckpointError naming the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from neuralese.codec.fsq import FSQ
from neuralese.config import from_dict
from neuralese.config.codec import CodecConfig, check_codec
from neuralese.errors import CheckpointError, CodecError, ConfigError
from neuralese.io import read_json, read_safetensors, write_json
from neuralese.ranges import check_ranges

CONFIG = "codec.json"
WEIGHTS = "codec.safetensors"
TOKENIZER = "tokenizer"
BASE = "base"
FORMAT = 1


class Block(nn.Module):
    """Pre-norm residual MLP block: x + W2 gelu(W1 norm(x))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


def mlp(inp: int, width: int, blocks: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, width),
        *[Block(width) for _ in range(blocks)],
        nn.LayerNorm(width),
        nn.Linear(width, out),
    )


class Codec(nn.Module):
    """An encoder from n tokens (or n lower-level dense tokens) to one code, and a decoder back."""

    def __init__(self, cfg: CodecConfig, vocab_size: int | None = None, base: Codec | None = None):
        super().__init__()
        self.cfg, self.base = cfg, base
        if base is not None:
            base.requires_grad_(False)  # frozen: level 2 learns to use level 1, never to change it
        self.level = 1 if base is None else base.level + 1
        self.vocab_size = vocab_size if base is None else base.vocab_size
        self.tokens_per_code = cfg.chunk_tokens * (1 if base is None else base.tokens_per_code)
        self.fsq = FSQ(cfg.fsq_levels) if cfg.quantizer == "fsq" else None
        self.code_width = (
            len(cfg.fsq_levels) if self.fsq is not None else cfg.code_width or len(cfg.fsq_levels)
        )
        self.item_width = cfg.embedding_size if base is None else base.code_width  # what one of the n is
        if base is None:
            self.embed = nn.Embedding(self.vocab_size, cfg.embedding_size)
            self.out_norm = nn.LayerNorm(cfg.embedding_size)
        chunk = cfg.chunk_tokens * self.item_width
        self.encoder = mlp(chunk, cfg.width, cfg.blocks, self.code_width)
        self.decoder = mlp(self.code_width, cfg.width, cfg.blocks, chunk)
        self.tokenizer: PreTrainedTokenizerBase | None = None if base is None else base.tokenizer
        self.source = "(not saved)"  # the folder it was loaded from (load_codec), for messages

    @property
    def num_codes(self) -> int | None:
        """The code vocabulary (FSQ), or None for a continuous codec."""
        return None if self.fsq is None else self.fsq.num_codes

    # ------------------------------------------------------------------ tokens -> codes

    def check_length(self, ids: torch.Tensor) -> None:
        if ids.shape[-1] % self.tokens_per_code:
            raise CodecError(
                f"{ids.shape[-1]} token ids do not divide into chunks of {self.tokens_per_code} (this level-{self.level} "
                f"codec's tokens per code); pad them to a multiple of {self.tokens_per_code} with the pad token"
            )

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """[..., d] pre-code -> code: FSQ's grid, or tanh for a continuous codec."""
        return self.fsq(z) if self.fsq is not None else torch.tanh(z)

    def pre_code(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, k*N] token ids -> [B, k, d] encoder outputs, before the quantizer."""
        self.check_length(ids)
        bsz, n = ids.shape[0], self.cfg.chunk_tokens
        if self.base is None:
            items = self.embed(ids)  # [B, k*n, e]
        else:
            with torch.no_grad():
                items = self.base.encode(ids)  # [B, k*n, d1]
        return self.encoder(items.reshape(bsz, -1, n * self.item_width))

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, k*N] token ids -> [B, k, d] codes."""
        return self.quantize(self.pre_code(ids))

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, k*N] token ids -> [B, k] code indices (FSQ only: a continuous code has none)."""
        self._need_fsq("codes")
        return self.fsq.index(self.encode(ids))

    # ------------------------------------------------------------------ codes -> tokens

    def logits(self, code: torch.Tensor) -> torch.Tensor:
        """[B, k, d] codes -> [B, k*N, V] logits of every text token, all positions at once."""
        bsz = code.shape[0]
        out = self.decoder(code).reshape(bsz, -1, self.item_width)  # [B, k*n, item]
        if self.base is None:
            return self.out_norm(out) @ self.embed.weight.T  # tied head: [B, k*n, V]
        return self.base.logits(self.base.quantize(out))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """[B, k, d] codes -> [B, k*N] token ids (the most likely token at each position)."""
        return self.logits(code).argmax(-1)

    def decode_codes(self, index: torch.Tensor) -> torch.Tensor:
        """[B, k] code indices -> [B, k*N] token ids."""
        self._need_fsq("decode_codes")
        bad = (index < 0) | (index >= self.num_codes)
        if bad.any():
            raise CodecError(
                f"code {int(index[bad][0])} is outside this codec's {self.num_codes} codes "
                f"(fsq_levels {self.cfg.fsq_levels}: indices 0..{self.num_codes - 1})"
            )
        return self.decode(self.fsq.code(index))

    def _need_fsq(self, what: str) -> None:
        if self.fsq is None:
            raise CodecError(
                f"{what}: this codec is continuous (quantizer 'none'), so its codes have no index"
            )

    # ------------------------------------------------------------------ text

    def text_ids(self, text: str) -> list[int]:
        """The text's token ids, or a CodecError naming the first piece outside the vocabulary."""
        tok = self.tokenizer
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        for i, tid in enumerate(enc["input_ids"]):
            if tid == tok.unk_token_id:
                a, b = enc["offset_mapping"][i]
                raise CodecError(
                    f"{text[a:b]!r} (characters {a}-{b} of {_brief(text)}) is not in this codec's vocabulary "
                    f"({len(tok)} pieces, built from the text it was trained on)"
                )
        return enc["input_ids"]

    def pad(self, ids: list[int]) -> list[int]:
        """`ids` padded with the pad token to a multiple of the tokens one code holds."""
        return ids + [self.tokenizer.pad_token_id] * (-len(ids) % self.tokens_per_code)

    @torch.no_grad()
    def encode_text(self, text: str) -> torch.Tensor:
        """[k] code indices of `text` (padded to whole chunks)."""
        ids = torch.tensor([self.pad(self.text_ids(text))], device=self.device)
        return self.codes(ids)[0]

    @torch.no_grad()
    def decode_text(self, index: torch.Tensor) -> str:
        """The text codes [k] decode to (pad and other special tokens left out)."""
        ids = self.decode_codes(index.reshape(1, -1).to(self.device))
        return self.tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)

    @property
    def device(self) -> torch.device:
        return self.encoder[0].weight.device

    # ------------------------------------------------------------------ the folder

    def own_state(self) -> dict[str, torch.Tensor]:
        """This level's weights (a base's are in its own folder)."""
        return {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if not k.startswith("base.")
        }

    def save(self, folder: str | Path, report: dict | None = None) -> Path:
        """Write the codec folder (the caller makes it atomic: neuralese.io.atomic_dir)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "level": self.level,
            "config": dataclasses.asdict(self.cfg),
            "vocab_size": self.vocab_size,
            "tokens_per_code": self.tokens_per_code,
            "code_width": self.code_width,
            "num_codes": self.num_codes,
        }
        write_json(folder / CONFIG, meta)
        save_file(self.own_state(), str(folder / WEIGHTS))
        if self.base is None:
            self.tokenizer.save_pretrained(folder / TOKENIZER)
        else:
            self.base.save(folder / BASE)
        if report is not None:
            write_json(folder / "report.json", report)
        return folder


def _brief(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def load_codec(path: str | Path, device: str | torch.device = "cpu", key: str | None = None) -> Codec:
    """The codec in folder `path` (any level), in eval mode; `key`, the recipe key that named the folder
    (`model.codec`, `codec.base`), starts any error's message."""
    try:
        codec = _load(Path(path))
    except CheckpointError as e:
        raise CheckpointError(f"{key}: {e}" if key else str(e)) from None
    codec.source = str(path)
    return codec.to(device).eval()


def _load(path: Path) -> Codec:
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise CheckpointError(
            f"codec folder {str(path)!r} {what}; expected a folder written by `neuralese codec train`"
        )
    meta = read_json(path / CONFIG, f"codec config ({CONFIG}, written by `neuralese codec train`)")
    cfg = _read_config(meta, path / CONFIG)
    level = meta.get("level")
    if (
        isinstance(level, bool)
        or not isinstance(level, int)
        or level < 1
        or (level > 1) != (path / BASE).is_dir()
    ):
        raise CheckpointError(
            f"{path / CONFIG}: 'level' is {level!r}; expected 1 (with {TOKENIZER}/) or a higher "
            f"level (with {BASE}/, the codec below it)"
        )
    if level == 1:
        from neuralese.models import load_tokenizer

        if not (path / TOKENIZER).is_dir():
            raise CheckpointError(f"{path}: codec folder has no {TOKENIZER}/ (its text tokenizer)")
        tokenizer = load_tokenizer(path / TOKENIZER)
        codec = Codec(cfg, vocab_size=len(tokenizer))
        codec.tokenizer = tokenizer
    else:
        codec = Codec(cfg, base=load_codec(path / BASE))
    state = read_safetensors(path / WEIGHTS, "codec weights")
    own = codec.own_state()
    wrong = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    if wrong:
        raise CheckpointError(
            f"{path / WEIGHTS}: does not fit the codec {CONFIG} describes (tensor {wrong[0]!r} "
            f"missing, unexpected or of another shape); the folder is damaged or mixed"
        )
    codec.load_state_dict(state, strict=False)
    return codec


def _read_config(meta, file: Path) -> CodecConfig:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise CheckpointError(
            f"{file}: expected a JSON object with 'format': {FORMAT} and a 'config' mapping"
        )
    try:
        cfg = from_dict(CodecConfig, meta["config"], source=str(file), prefix="codec.")
        check_ranges(cfg, str(file), prefix="codec.")
        check_codec(cfg, str(file))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    return cfg
