"""`DenseTokenizer`: a tokenizer whose tokens are a codec's codes, for a causal LM that reads and writes dense tokens.

    text  -> the codec's text tokens, padded to whole chunks -> one code per chunk -> <c17> <c503> ...
    codes -> each code decoded by the codec to its chunk     -> text tokens -> text (padding left out)

The vocabulary is the five special tokens of the tiny tokenizers (pad, bos, eos, unk, `<thought>`) and
then one token per FSQ code (`<c0>`, `<c1>`, ...): a causal LM built over it (stage 0 with
`model.codec`) predicts codes with its ordinary head. Because the policy's text goes through this
tokenizer both ways, `NeuralesePolicy.encode` / `decode`, the rollout, every environment and every
reward work unchanged: the completion the rewards score is the codec's decoding of the codes the
policy wrote, and a completion of k codes stands for k * N text tokens (N the codec's tokens per code).

Special tokens inside a text (a run of `<thought>`) split it, and each piece is encoded alone; a
prompt and its completion are therefore encoded apart, as `pretokenize` does for stage 0 (TRL would
tokenize prompt + completion as one text, whose chunks straddle the boundary). The end of a
completion is the eos token, written after its last code.

The model folder keeps the codec in `codec/` and `dense_tokenizer.json` beside the model's files;
rl.models.load_tokenizer loads such a folder with this class.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
from transformers import PreTrainedTokenizer

from rl.codec.model import Codec, load_codec
from rl.errors import CheckpointError, CodecError
from rl.io import read_json, write_json
from rl.tiny import BOS, EOS, PAD, THOUGHT, UNK

DENSE_FILE = "dense_tokenizer.json"
CODEC_DIR = "codec"
SPECIALS = (PAD, BOS, EOS, UNK, THOUGHT)
FORMAT = 1


def code_token(index: int) -> str:
    return f"<c{index}>"


class DenseTokenizer(PreTrainedTokenizer):
    """Text to a codec's codes and back (the module docstring); ids are the specials, then the codes."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, codec: Codec, **kwargs):
        if codec.num_codes is None:
            raise CodecError(
                "a dense-token model needs a discrete codec (quantizer 'fsq'); this one is continuous"
            )
        self.codec = codec
        self.offset = len(SPECIALS)
        self._vocab = {tok: i for i, tok in enumerate(SPECIALS)}
        self._vocab.update({code_token(c): self.offset + c for c in range(codec.num_codes)})
        self._chunks: dict[int, list[int]] = {}  # code -> its chunk's text ids, decoded once
        kwargs.update(pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK, additional_special_tokens=[THOUGHT],
                      clean_up_tokenization_spaces=False, padding_side="left", model_max_length=4096)  # fmt: skip
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    # ------------------------------------------------------------------ text -> codes

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        """The code ids (vocabulary ids, not code indices) of each text, in one codec batch."""
        codec = self.codec
        try:
            rows = [codec.pad(codec.text_ids(t)) for t in texts]
        except CodecError as e:  # a dense model asked to read text its codec never saw
            raise CodecError(f"the dense-token model's codec ({codec.source}): {e}") from None
        width = max((len(r) for r in rows), default=0)
        if width == 0:
            return [[] for _ in texts]
        pad = codec.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=codec.device)
        codes = (codec.codes(ids) + self.offset).tolist()  # [B, width / N]
        return [c[: len(r) // codec.tokens_per_code] for c, r in zip(codes, rows)]

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return [self._convert_id_to_token(i) for i in self.encode_texts([text])[0]]

    def _convert_token_to_id(self, token: str) -> int:
        return self._vocab.get(token, self._vocab[UNK])

    def _convert_id_to_token(self, index: int) -> str:
        return SPECIALS[index] if index < self.offset else code_token(index - self.offset)

    # ------------------------------------------------------------------ codes -> text

    def chunk_ids(self, codes: list[int]) -> list[int]:
        """The text ids code indices decode to (each code's chunk decoded once, then looked up)."""
        missing = sorted({c for c in codes if c not in self._chunks})
        if missing:
            decoded = self.codec.decode_codes(torch.tensor([missing], device=self.codec.device))[0]
            for c, ids in zip(missing, decoded.view(len(missing), -1).tolist()):
                self._chunks[c] = ids
        return [t for c in codes for t in self._chunks[c]]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Runs of codes decoded through the codec; special tokens (when kept) as they are."""
        parts: list[str] = []
        run: list[int] = []
        for tok in tokens + [None]:
            index = self._vocab.get(tok, -1) - self.offset if tok is not None else -1
            if index >= 0:
                run.append(index)
                continue
            if run:
                ids = self.chunk_ids(run)
                parts.append(self.codec.tokenizer.decode(ids, skip_special_tokens=True))
                run = []
            if tok is not None:
                parts.append(tok)
        return "".join(parts)

    # ------------------------------------------------------------------ the folder

    def save_pretrained(self, save_directory, **kwargs) -> tuple[str, ...]:
        """`dense_tokenizer.json` and the codec's folder in `codec/` (transformers' own files would name a
        class AutoTokenizer does not know; rl.models.load_tokenizer reads these instead)."""
        folder = Path(save_directory)
        self.codec.save(folder / CODEC_DIR)
        write_json(folder / DENSE_FILE, {"format": FORMAT, "codec": CODEC_DIR, "specials": list(SPECIALS),
                                         "codes": self.codec.num_codes})  # fmt: skip
        return (str(folder / DENSE_FILE),)

    @classmethod
    def of_codec(cls, path: str | Path, key: str) -> DenseTokenizer:
        """The dense tokenizer over the codec folder `path`, which the recipe key `key` names."""
        codec = load_codec(path, key=key)
        try:
            return cls(codec)
        except CodecError as e:
            raise CodecError(f"{key} {str(path)!r}: {e}") from None

    @classmethod
    def from_folder(cls, path: str | Path) -> DenseTokenizer:
        """The dense tokenizer of a model folder (its `dense_tokenizer.json` and `codec/`)."""
        path = Path(path)
        meta = read_json(path / DENSE_FILE, "dense tokenizer file")
        if (
            not isinstance(meta, dict)
            or meta.get("format") != FORMAT
            or meta.get("specials") != list(SPECIALS)
        ):
            raise CheckpointError(
                f"{path / DENSE_FILE}: expected 'format': {FORMAT} and the specials {list(SPECIALS)}"
            )
        tokenizer = cls(load_codec(path / str(meta.get("codec", CODEC_DIR))))
        if meta.get("codes") != tokenizer.codec.num_codes:
            raise CheckpointError(f"{path / DENSE_FILE}: says {meta.get('codes')} codes, but its codec has "
                                  f"{tokenizer.codec.num_codes}; the folder is damaged or mixed")  # fmt: skip
        return tokenizer


def is_dense_folder(path: str | Path) -> bool:
    return (Path(path) / DENSE_FILE).is_file()


def pretokenize(data: datasets.Dataset, tokenizer: DenseTokenizer) -> datasets.Dataset:
    """Stage-0 rows as TRL takes them tokenized: prompt codes, completion codes and eos, the loss on the
    completion (`completion_mask`); prompt and completion encoded apart (the module docstring)."""
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in data["prompt"]]
    completions = tokenizer.encode_texts(list(data["completion"]))
    eos = tokenizer.eos_token_id
    ids = [p + c + [eos] for p, c in zip(prompts, completions)]
    masks = [[0] * len(p) + [1] * (len(c) + 1) for p, c in zip(prompts, completions)]
    return datasets.Dataset.from_dict({"input_ids": ids, "completion_mask": masks})
