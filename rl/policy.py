"""`NeuralesePolicy`: a Hugging Face causal LM plus the feedback adapter.

The policy never changes the language model's code: it drives it through
`inputs_embeds`, building each input itself (token embedding, plus the gated feedback
vector at feedback positions). With the gate at its initial value, or with feedback
switched off, its logits are the plain model's, bit for bit.

A saved policy is a Hugging Face model folder (LoRA merged, safetensors) with two more
files: `neuralese.json` (the feedback config) and `feedback.safetensors` (adapter
weights). `AutoModelForCausalLM.from_pretrained(folder)` loads the language model alone;
`NeuralesePolicy.from_pretrained(folder)` loads it with its thoughts. A folder without
`neuralese.json` loads as a plain model (mode `off`). Run folders and their checkpoints are rebuilt
from the run's config by `neuralese.load_policy`, one layer up.

The policy owns the ways of running it: `rollout` (sample thoughts and answers into a `Rollout`
record), `recompute` (the record's log-probs with gradient through a truncated latent chain),
`replay` (the record's forward pass again, without gradient bookkeeping), `complete` and `generate`
(text in, text out), and `answers` (text with its thoughts and log-probs). Each asks the thought mode
in force (neuralese.modes), which the policy holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from neuralese.config import ModelConfig, NeuraleseConfig, from_dict
from neuralese.errors import CheckpointError, ConfigError
from neuralese.feedback import FeedbackAdapter, Source
from neuralese.io import read_json, read_safetensors
from neuralese.models import CACHE, embed_scale, ensure_thought_token, load_model
from neuralese.modes import ThoughtMode, get_mode
from neuralese.ranges import check_ranges
from neuralese.recompute import Recomputed, Window
from neuralese.rollout import Answer, Rollout, Sampling, answers, extend_columns

CONFIG_FILE = "neuralese.json"
ADAPTER_FILE = "feedback.safetensors"


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict]) -> str:
    """Prompt text: plain text as is, a conversation through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("a conversational prompt needs a tokenizer with a chat template")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def tokenize_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list, **kwargs):
    """The tokenizer's encoding of rendered prompts, as the policy reads them: plain text with the
    tokenizer's special tokens, a conversation with only those its chat template wrote."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    special = all(isinstance(p, str) for p in prompts)
    return tokenizer(texts, add_special_tokens=special, **kwargs)


class NeuralesePolicy(nn.Module):
    """A causal LM that can feed its hidden state back into its next input."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: NeuraleseConfig | None = None,
        adapter: FeedbackAdapter | None = None,
        add_thought_token: bool = False,
    ):
        super().__init__()
        self.config = config or NeuraleseConfig(mode="off")
        self.tokenizer = tokenizer
        self.thought_token_id = -1
        self._mode = get_mode(self.config)
        self._off = ThoughtMode(NeuraleseConfig(mode="off"))
        if self._mode.uses_thought_token:
            self.thought_token_id = ensure_thought_token(
                model, tokenizer, self.config.thought_token, add_thought_token
            )
        self.model = model
        self.adapter = adapter or FeedbackAdapter.for_model(self.config, model, self._mode)
        if adapter is None and self.config.space == "pause":
            # A pause thought starts as the thought token's embedding (the mean embedding without one).
            table = self.embedding_table.detach().float()
            start = table[self.thought_token_id] if self.thought_token_id >= 0 else table.mean(0)
            with torch.no_grad():
                self.adapter.pause_vector.copy_(start)
        self._feedback_enabled = True

    # ------------------------------------------------------------------ model access

    @property
    def feedback_on(self) -> bool:
        return self._mode.feeds_back and self._feedback_enabled

    @property
    def mode(self) -> ThoughtMode:
        """The thought mode in force (neuralese.modes): the config's, or `off` while feedback is disabled."""
        return self._mode if self.feedback_on else self._off

    @property
    def hidden_size(self) -> int:
        return self.adapter.hidden_size

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def eos_token_ids(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[n] every id that ends a completion (tokenizer eos and the generation config's)."""
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return torch.tensor(sorted(i for i in ids if i is not None), device=device)

    @contextlib.contextmanager
    def feedback_disabled(self) -> Iterator[None]:
        """The reference policy: feedback off, and LoRA adapters off when the model has them."""
        self._feedback_enabled = False
        adapters = (
            self.model.disable_adapter()
            if hasattr(self.model, "disable_adapter")
            else contextlib.nullcontext()
        )
        try:
            with adapters:
                yield
        finally:
            self._feedback_enabled = True

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings E[x]: [B, T] -> [B, T, D]."""
        return self.model.get_input_embeddings()(ids)

    def forward(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        keep: int | torch.Tensor = 0,
    ):
        """One model call on input embeddings [B, T, D]; hidden states are returned when feedback is on.

        attention_mask covers the cache and the new positions; `keep` is transformers'
        `logits_to_keep` (0 = all positions, an int n = the last n, a tensor = those indices).
        """
        return self.model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{CACHE: cache},
            use_cache=cache is not None,
            output_hidden_states=self.feedback_on,  # thought sources, logits included (thought_source)
            logits_to_keep=keep,
            return_dict=True,
        )

    @property
    def embedding_table(self) -> torch.Tensor:
        """E [V, D]: the token embeddings the model reads (its table, times the embedding layer's scale
        where it has one, as Gemma's), what embedding-space thoughts are mixtures of."""
        table, scale = self.model.get_input_embeddings().weight, embed_scale(self.model)
        return table if scale == 1.0 else table * scale

    def thought_source(self, out, index=slice(None), probe: torch.Tensor | None = None) -> Source | None:
        """What the thoughts after positions `index` of a model output are computed from (None with
        feedback off): the selected hidden state [B, n, D] and the next-token logits [B, n, V].

        probe: [B, n, D] zeros added to the source hidden states (the selected one and the final one the
        logits come from), whose gradient is the gradient reaching each feedback edge.
        """
        if not self.feedback_on:
            return None
        adapter, hidden, logits = self.adapter, None, None
        if adapter.uses_hidden:
            hidden = adapter.select(out.hidden_states)[:, index]
            if probe is not None:
                hidden = hidden + probe
        if adapter.uses_logits:
            final = out.hidden_states[-1][:, index]
            if probe is not None:
                final = final + probe.to(final.dtype)
            logits = self.model.get_output_embeddings()(final)
        return Source(hidden=hidden, logits=logits)

    # ------------------------------------------------------------------ text in, text out

    def encode(
        self, prompts: list, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt ids and mask, [B, P] each."""
        enc = tokenize_prompts(self.tokenizer, prompts, return_tensors="pt", padding=True)
        device = device or self.device
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def decode(self, rollout) -> list[str]:
        """The answer text of each sequence of a rollout (no thoughts, no special tokens)."""
        return self.tokenizer.batch_decode(rollout.completion_ids(), skip_special_tokens=True)

    # ------------------------------------------------------------------ running the policy

    @torch.no_grad()
    def rollout(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        ignore_eos: bool = False,
        thoughts: torch.Tensor | None = None,
    ) -> Rollout:
        """Sample thoughts and answers for a batch of left-padded prompts, the way the mode in force does.

        prompt_ids, prompt_mask: [B, P]. Greedy when `temperature` is 0. Latent mode runs
        `num_thoughts` thought positions before the at most `max_new_tokens` answer tokens.
        `ignore_eos` keeps sampling after eos (benchmarks that need a fixed length).
        `thoughts` [B, S, D]: use these as the thoughts of the first S generated positions instead of
        the policy's own (the `shuffled` control gives each prompt another prompt's `Rollout.thoughts`);
        they are drawn by nobody, so they add no log-prob.
        """
        sampling = Sampling(max_new_tokens, temperature, generator, ignore_eos, thoughts)
        return self.mode.rollout(self, prompt_ids, prompt_mask, sampling)

    def recompute(
        self, ro: Rollout, window: Window, probe: torch.Tensor | None = None, need_hidden: bool = False
    ) -> Recomputed:
        """Recompute `ro`'s log-probs with gradient, truncating the latent chain to `window` edges
        (neuralese.recompute says how).

        probe: optional [B, L, D] tensor added to the fed-back source state of every position
        (zeros that require grad); its gradient is the gradient reaching each feedback edge.
        (Refine mode also takes [B, passes, L, D]: one probe per pass.)
        need_hidden: also return pass 1's last hidden states (for a value head).
        """
        return self.mode.recompute(self, ro, window, probe, need_hidden)

    def replay(self, ro: Rollout, hidden: bool = True):
        """The model's output over `ro`'s recorded inputs (thoughts included): one teacher-forced pass
        whose forward values equal the rollout's, for reading what the thoughts were made from (the
        inspector, lenses, superposition diagnostics). `hidden`: with every layer's hidden states."""
        return self.model(
            inputs_embeds=self.mode.final_inputs(self, ro),
            attention_mask=ro.attention_mask,
            position_ids=ro.position_ids,
            output_hidden_states=hidden,
            return_dict=True,
        )

    def batches(
        self, prompts: list, max_new_tokens: int, temperature: float, batch_size: int, generator
    ) -> Iterator[tuple[Rollout, list[str]]]:
        """The rollout of each batch of `batch_size` prompts, with its answer texts."""
        for start in range(0, len(prompts), batch_size):
            ids, mask = self.encode(prompts[start : start + batch_size])
            ro = self.rollout(ids, mask, max_new_tokens, temperature, generator)
            yield ro, self.decode(ro)

    @torch.no_grad()
    def complete(
        self,
        prompts: list,
        max_new_tokens: int,
        temperature: float = 0.0,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
    ) -> tuple[list[str], dict[str, list]]:
        """Answer texts for `prompts`, in batches, and what rewards receive beside the dataset's columns
        (`Rollout.reward_columns`: completion ids, thoughts, generated positions), one entry per prompt."""
        texts: list[str] = []
        columns: dict[str, list] = {}
        for ro, batch in self.batches(prompts, max_new_tokens, temperature, batch_size, generator):
            texts.extend(batch)
            extend_columns(columns, ro.reward_columns())
        return texts, columns

    @torch.no_grad()
    def answers(
        self,
        prompts: list,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> list[Answer]:
        """Answers for `prompts` (text or conversations) with what made them: per answer its text, tokens,
        every generated position's sampling log-probability and the thoughts fed back
        (neuralese.rollout.Answer). Batched; greedy by default."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        found: list[Answer] = []
        for ro, texts in self.batches(prompts, max_new_tokens, temperature, batch_size, generator):
            found += answers(ro, texts)
        return found

    def generate(
        self,
        prompts: list,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> list[str]:
        """The answer texts alone of `answers` (text or conversations in, batched; greedy by default)."""
        return [a.text for a in self.answers(prompts, max_new_tokens, temperature, batch_size, seed)]

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """A Hugging Face folder (LoRA merged) plus `neuralese.json` and `feedback.safetensors`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):  # peft: merge into a copy, keep training weights intact
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        meta = {"neuralese": dataclasses.asdict(self.config), **(extra or {})}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.adapter.state_dict().items()}
        save_file(state, str(path / ADAPTER_FILE))
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        model_config: ModelConfig | None = None,
        device: str | torch.device = "cpu",
        config: NeuraleseConfig | None = None,
    ) -> NeuralesePolicy:
        """Load a saved policy from a model folder (what `neuralese export` writes, or a plain Hugging Face
        folder, which loads with feedback `off` unless `config` is given). A run folder or a run checkpoint
        holds no model folder: `neuralese.load_policy` rebuilds it from the run's config."""
        path = Path(path)
        if not (path / "config.json").is_file() and (
            (path / "config.yaml").is_file()
            or (path / "checkpoints").is_dir()
            or (path / "manifest.json").is_file()
        ):
            raise CheckpointError(
                f"{path}: is a run folder or a run checkpoint, not a model folder (no config.json); "
                "load it with neuralese.load_policy(path), which rebuilds it from the run's config"
            )
        model_config = model_config or ModelConfig()
        model, tokenizer = load_model(path, model_config, device)
        adapter_state = None
        if config is None and (path / CONFIG_FILE).is_file():
            config = read_feedback_config(path / CONFIG_FILE)
            if not (path / ADAPTER_FILE).is_file():
                raise CheckpointError(f"{path}: has {CONFIG_FILE} but no {ADAPTER_FILE} (feedback weights)")
            adapter_state = read_safetensors(path / ADAPTER_FILE, "feedback weights")
        policy = cls(model, tokenizer, config, add_thought_token=model_config.add_thought_token)
        if adapter_state is not None:
            try:
                policy.adapter.load_state_dict(adapter_state)
            except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
                raise CheckpointError(
                    f"{path / ADAPTER_FILE}: does not fit the feedback adapter {CONFIG_FILE} describes "
                    f"(layer {config.layer!r}, projection {config.projection!r}): {' '.join(str(e).split())[:300]}"
                ) from None
        return policy.to(device)


def read_feedback_config(meta_file: Path) -> NeuraleseConfig:
    """The `neuralese` section of a saved policy's `neuralese.json`, checked like a recipe."""
    meta = read_json(meta_file, CONFIG_FILE)
    if not isinstance(meta, dict) or not isinstance(meta.get("neuralese"), dict):
        raise CheckpointError(
            f"{meta_file}: expected a JSON object with a 'neuralese' mapping (the feedback config)"
        )
    try:
        config = from_dict(NeuraleseConfig, meta["neuralese"], source=str(meta_file), prefix="neuralese.")
        check_ranges(config, str(meta_file), prefix="neuralese.")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    return config
