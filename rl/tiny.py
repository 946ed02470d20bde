"""Tiny models and tokenizers built from a task's own data.

No weights can be downloaded here, so tests and the demo build a small Llama-, Qwen2- or
GPT-2-style model from a config, with a word-level tokenizer whose vocabulary is the
set of pieces found in the task's text. Both are saved to a folder and loaded back with
`AutoModelForCausalLM` / `AutoTokenizer`: the same code path a user's checkpoint takes.

The pre-tokenizer cuts text into words with their leading space (" wumpus"), single
digits, single punctuation marks (with a leading space if any) and single whitespace
characters. Every character of the input lands in exactly one piece and the decoder
concatenates pieces, so decode(encode(s)) == s for every string made of known pieces.
With `number_pieces` (TinyModelConfig) a whole number with its sign is one piece instead:

    >>> text_pieces("3,1?+3-2+0")
    ['3', ',', '1', '?', '+', '3', '-', '2', '+', '0']
    >>> text_pieces("3,1?+3-2+0", NUMBER_PATTERN)
    ['3', ',', '1', '?', '+3', '-2', '+0']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast
from transformers.models.auto.auto_factory import _BaseAutoModelClass

from neuralese.config import TinyModelConfig
from neuralese.errors import EnvError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
THOUGHT = "<thought>"
PIECE_PATTERN = r" ?[A-Za-z]+|\d| ?[^\sA-Za-z\d]|\s"
# Another tokenizer of the same text: digits in pairs from the left ("6911" -> "69", "11"), so two
# tiny models can differ in tokenizer as well as shape (neuralese.translate pairs their positions).
DIGIT_PAIR_PATTERN = r" ?[A-Za-z]+|\d\d|\d| ?[^\sA-Za-z\d]|\s"
# A whole number with its sign, if any, is one piece (TinyModelConfig.number_pieces): a value is one position.
NUMBER_PATTERN = r" ?[A-Za-z]+|[+-]?\d+| ?[^\sA-Za-z\d]|\s"

# A minimal chat template so conversational prompts work with tiny tokenizers too.
# Roles become words of the vocabulary ("user:", "assistant:"), one message per line.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
CHAT_ROLES = ("system", "user", "assistant")


def piece_pattern(cfg: TinyModelConfig) -> str:
    """The pre-tokenizer pattern of a tiny model's tokenizer: digits one by one, or whole numbers."""
    return NUMBER_PATTERN if cfg.number_pieces else PIECE_PATTERN


def _pre_tokenizer(pattern: str = PIECE_PATTERN) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(pattern), behavior="isolated")


def text_pieces(text: str, pattern: str = PIECE_PATTERN) -> list[str]:
    """The pieces the tiny tokenizer cuts `text` into (before the vocabulary lookup)."""
    return [piece for piece, _ in _pre_tokenizer(pattern).pre_tokenize_str(text)]


def check_boundaries(prompts: list, completions: list, where: str, pattern: str = PIECE_PATTERN) -> None:
    """Refuse rows whose prompt and completion the pre-tokenizer would fuse into one piece (a prompt
    ending in a letter, a completion starting with one). Stage 0 learns prompt + completion as one
    text, so the model would never see the prompt end where generation starts; it would learn the task
    and then fail at it (every answer wrong). Conversational prompts end in the chat template's role."""
    pre = _pre_tokenizer(pattern)
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        if not isinstance(prompt, str) or not isinstance(completion, str):
            continue
        cut = len(prompt)
        for piece, (start, end) in pre.pre_tokenize_str(prompt + completion):
            if start < cut < end:
                raise EnvError(
                    f"{where}, row {i}: the prompt's end {prompt[-10:]!r} and the completion's start "
                    f"{completion[:10]!r} make one token {piece!r} of the tiny model's tokenizer, so stage 0 "
                    "would never see a prompt end where generation starts; end each prompt (or start each "
                    "completion) with a separator, such as '=', ':' or a space"
                )
            if start >= cut:
                break


def build_tokenizer(
    texts: Iterable[str], extra_tokens: Iterable[str] = (), pattern: str = PIECE_PATTERN
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer whose vocabulary is every piece found in `texts`.

    Special tokens: pad, bos, eos, unk and the reserved thought token (plus `extra_tokens`).
    The vocabulary is sorted, so the same texts always give the same ids. `pattern` cuts the
    pieces (a regex that must cover every character); another pattern gives another tokenizer
    of the same text, as two models' tokenizers differ (neuralese.translate aligns them).
    """
    pieces: set[str] = set()
    for text in texts:
        # Also with a leading space: a text's first word may follow a space elsewhere
        # (after a chat role, or when prompts are joined).
        pieces.update(text_pieces(text, pattern))
        pieces.update(text_pieces(" " + text, pattern))
    # Chat-template words, so conversational prompts never hit <unk>.
    for role in CHAT_ROLES:
        pieces.update(text_pieces(f"{role}: \n", pattern))
    specials = [PAD, BOS, EOS, UNK, THOUGHT, *extra_tokens]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for piece in sorted(pieces - set(specials)):
        vocab[piece] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = _pre_tokenizer(pattern)
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[THOUGHT, *extra_tokens],
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# What a family names differently: GPT-2's MLP width is `n_inner`. Dropout is `cfg.dropout` (GPT-2's
# default of 0.1 otherwise): the recompute runs in training mode and must equal the rollout.
ARCH_SETTINGS = {
    "gpt2": lambda cfg: {"n_inner": cfg.intermediate_size},
}
DROPOUT_KEYS = {
    "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
    "llama": ("attention_dropout",),
    "qwen2": ("attention_dropout",),
}


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    cfg: TinyModelConfig,
    seed: int = 0,
    auto_class: type[_BaseAutoModelClass] = AutoModelForCausalLM,
    **config_overrides,
) -> PreTrainedModel:
    """A freshly initialised model of shape `cfg` for `tokenizer`'s vocabulary (fp32): a causal LM,
    or with `auto_class=AutoModelForSequenceClassification, num_labels=1` a reward model."""
    dropout = {key: cfg.dropout for key in DROPOUT_KEYS.get(cfg.arch, ())}
    config_overrides = {**ARCH_SETTINGS.get(cfg.arch, lambda c: {})(cfg), **dropout, **config_overrides}
    config = AutoConfig.for_model(
        cfg.arch,
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        initializer_range=cfg.init_std or cfg.hidden_size**-0.5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config_overrides,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto_class.from_config(config, dtype=torch.float32)
    # The dropout modules keep their rate for stage 0, while the config that is saved says 0: a loaded
    # model has none (transformers reads the rates when it builds the modules, not when it runs them).
    for key in dropout:
        setattr(model.config, key, 0.0)
    if not model.can_generate():  # a sequence classifier has no generation config
        return model
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def save_tiny(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: str | Path) -> Path:
    """Save a model and tokenizer as a Hugging Face folder (safetensors)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def save_untrained(
    texts: Iterable[str],
    shape: TinyModelConfig,
    path: str | Path,
    seed: int = 0,
    pattern: str = PIECE_PATTERN,
) -> Path:
    """A freshly initialised model of `shape`, with a tokenizer of the pieces of `texts`, saved to `path`:
    the model a benchmark times or a probe studies when no stage 0 has trained it."""
    tokenizer = build_tokenizer(texts, pattern=pattern)
    return save_tiny(build_tiny_model(tokenizer, shape, seed=seed), tokenizer, path)
