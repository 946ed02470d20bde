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
neuralese.models.load_tokenizer loads such a folder with this class.

A code's embedding is `atomic` (a row of its own, as for any token) or, with `model.codec_embedding:
composed`, stage 0 trains it as a composition of the tokens it stands for (`ComposedCodes`): the sum
over the code's slots j of P_j e(t_j), with t_j the text token the codec decodes slot j to, e a table
over the codec's text vocabulary and P_j a map per slot, both learned, plus a row of the code's own
that starts at 0. Codes that share a digit in a slot share a part, and the tied head's logit of a code
starts as a sum of per-slot logits (h . P_j e(t_j) = (P_j^T h) . e(t_j)): a product of per-slot
distributions over the codes the codec writes. Every code holding a digit 3 then learns from every
example with a 3 in that slot, instead of each of addition's 100 x 100 digit pairs alone. The
saved folder holds the composed rows as the model's plain table (`fix_code_embeddings`): a plain causal
LM that RL, eval and export load and train as any other.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import PreTrainedTokenizer

from neuralese.codec.model import Codec, load_codec
from neuralese.errors import CheckpointError, CodecError
from neuralese.io import read_json, write_json
from neuralese.models import register_tokenizer
from neuralese.tiny import BOS, EOS, PAD, THOUGHT, UNK

DENSE_FILE = "dense_tokenizer.json"
CODEC_DIR = "codec"
SPECIALS = (PAD, BOS, EOS, UNK, THOUGHT)
FORMAT = 1
MAX_CODES = 2**20  # one vocabulary row per code: past about a million, the table is the model


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
        if codec.num_codes > MAX_CODES:
            raise CodecError(
                f"a dense-token model has one token per code, and this codec's fsq_levels {codec.cfg.fsq_levels} "
                f"make {codec.num_codes:.3g} codes (at most {MAX_CODES:,}); train its codec with fewer or "
                "smaller levels"
            )
        self.codec = codec
        self.offset = len(SPECIALS)
        self._vocab = {tok: i for i, tok in enumerate(SPECIALS)}
        self._vocab.update({code_token(c): self.offset + c for c in range(codec.num_codes)})
        self._chunks: dict[int, list[int]] = {}  # code -> its chunk's text ids, decoded once
        kwargs.update(
            pad_token=PAD,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=UNK,
            additional_special_tokens=[THOUGHT],
            clean_up_tokenization_spaces=False,
            padding_side="left",
            model_max_length=4096,
        )
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

    def code_chunks(self) -> torch.Tensor:
        """[num_codes, N] the text ids every code decodes to (padding included: it is the slot's token)."""
        every = list(range(self.codec.num_codes))
        return torch.tensor(self.chunk_ids(every)).view(len(every), self.codec.tokens_per_code)

    @torch.no_grad()
    def written_codes(self, chunks: torch.Tensor) -> torch.Tensor:
        """[num_codes] bool: whether the codec writes code c for the chunk c decodes to. Many codes decode to
        one chunk (1,000 codes, about 120 chunks on addition's text) and the encoder writes one of them."""
        written = self.codec.codes(chunks.to(self.codec.device))[:, 0].cpu()  # [num_codes]
        return written == torch.arange(len(chunks))

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
        class AutoTokenizer does not know; neuralese.models.load_tokenizer reads these instead)."""
        folder = Path(save_directory)
        self.codec.save(folder / CODEC_DIR)
        write_json(
            folder / DENSE_FILE,
            {"format": FORMAT, "codec": CODEC_DIR, "specials": list(SPECIALS), "codes": self.codec.num_codes},
        )
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
            raise CheckpointError(
                f"{path / DENSE_FILE}: says {meta.get('codes')} codes, but its codec has "
                f"{tokenizer.codec.num_codes}; the folder is damaged or mixed"
            )
        return tokenizer


class ComposedCodes(nn.Module):
    """A parametrization of an embedding table: each code's row is its own row plus the sum over slots
    sum_j P_j e(t_j) / sqrt(N) (the module docstring); e [V_text, width], P_j [width, width] and the own
    rows all train. e starts N(0, std^2), P_j random orthogonal and the own rows at 0
    (`compose_code_embeddings`), so a row starts with the model's own spread, and as the composition.

    Only the codes the codec writes (`written`) are composed. Another code that decodes to the same chunk
    would get the same row, so the tied head would split each answer's probability among them; those
    keep only their own row, which the head learns to leave unwritten."""

    def __init__(
        self,
        chunks: torch.Tensor,
        written: torch.Tensor,
        offset: int,
        text_vocab: int,
        width: int,
        std: float,
        seed: int,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.offset = offset
        self.register_buffer("chunks", chunks, persistent=False)  # [num_codes, N] text ids of each code
        self.register_buffer("written", written[:, None], persistent=False)  # [num_codes, 1]
        self.base = nn.Parameter(torch.randn(text_vocab, width, generator=gen) * std)  # e
        maps = [torch.linalg.qr(torch.randn(width, width, generator=gen))[0] for _ in range(chunks.shape[1])]
        self.maps = nn.Parameter(torch.stack(maps))  # P: [N, width, width]

    def rows(self) -> torch.Tensor:
        """[num_codes, width] the composed code embeddings."""
        slots = self.chunks.shape[1]
        # [num_codes, N, width]: P_j e(t_j) for every code and slot
        parts = torch.einsum("csw,svw->csv", self.base[self.chunks], self.maps)
        return parts.sum(1) / slots**0.5

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The table with the composition added to its written codes' rows; the other rows as given."""
        n = len(self.chunks)
        own = weight[self.offset : self.offset + n]
        rows = own + self.written * self.rows().to(weight.dtype)  # [num_codes, width]
        return torch.cat([weight[: self.offset], rows, weight[self.offset + n :]])


def compose_code_embeddings(model, tokenizer: DenseTokenizer, seed: int) -> ComposedCodes:
    """Make a freshly built dense model's code rows (its input embedding and its head, tied or not) a
    `ComposedCodes` of the tokens each code decodes to, until `fix_code_embeddings`."""
    emb = model.get_input_embeddings()
    chunks = tokenizer.code_chunks()
    composed = ComposedCodes(
        chunks,
        tokenizer.written_codes(chunks),
        tokenizer.offset,
        len(tokenizer.codec.tokenizer),
        emb.weight.shape[1],
        model.config.initializer_range,
        seed,
    )
    composed.to(emb.weight.device)
    with torch.no_grad():  # a written code's own row starts at 0: its embedding starts as the composition
        codes = emb.weight[tokenizer.offset : tokenizer.offset + len(chunks)]
        codes.masked_fill_(composed.written.to(codes.device), 0.0)
    for module in _code_tables(model):  # a tied head shares the table, so the same composition on both
        parametrize.register_parametrization(module, "weight", composed, unsafe=True)
    return composed


def fix_code_embeddings(model) -> None:
    """Write the composed rows into the model's own table(s): a plain causal LM again, saved as any other."""
    tables = [m for m in _code_tables(model) if parametrize.is_parametrized(m, "weight")]
    with torch.no_grad():
        values = [m.weight.detach().clone() for m in tables]  # all read before any is written: a tied head
        for module in tables:  # shares its table, which the composition must not be added to twice
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        for module, value in zip(tables, values):
            module.weight.copy_(value)


def _code_tables(model) -> list[nn.Module]:
    head = model.get_output_embeddings()
    return [model.get_input_embeddings(), *([head] if head is not None else [])]


def is_dense_folder(path: str | Path) -> bool:
    return (Path(path) / DENSE_FILE).is_file()


# A dense model's folder holds its codec in place of transformers' tokenizer files: the model loader
# reads it with DenseTokenizer.
register_tokenizer(is_dense_folder, DenseTokenizer.from_folder)


def pretokenize(data: datasets.Dataset, tokenizer: DenseTokenizer) -> datasets.Dataset:
    """Stage-0 rows as TRL takes them tokenized: prompt codes, completion codes and eos, the loss on the
    completion (`completion_mask`); prompt and completion encoded apart (the module docstring)."""
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in data["prompt"]]
    completions = tokenizer.encode_texts(list(data["completion"]))
    eos = tokenizer.eos_token_id
    ids = [p + c + [eos] for p, c in zip(prompts, completions)]
    masks = [[0] * len(p) + [1] * (len(c) + 1) for p, c in zip(prompts, completions)]
    return datasets.Dataset.from_dict({"input_ids": ids, "completion_mask": masks})
