"""Thinking across models: model A thinks, a translator carries its thoughts into model B, and B answers.

    A (thinker)    reads the prompt in its own tokenizer, then thinks K latent thoughts (latent mode):
                   f_1 from its last prompt position, f_k from its thought position k-1, whose input is
                   f_{k-1} (`cross.thinker_input: latent_only`) or A's thought token combined with it
                   (neuralese.translate.chain)
    translation    y_k = T(f_k) (+ sigma * eps_k with `neuralese.noise_std`)
    B (reader)     reads the prompt in its own tokenizer, then K thought positions whose inputs are B's
                   thought token combined with y_k (B's gate, or y_k alone with `input: latent_only`),
                   then writes the answer; B's reward is the task's

B is the run's model (`model.path`) and the policy the trainer sees: `CrossModelPolicy` is a
`NeuralesePolicy` for B whose thought mode (`CrossMode`, latent mode's layout) fills B's thought
positions from A instead of from B's own states. The translator T sits in B's feedback adapter (in
place of B's projection), so it is trained, checkpointed and loaded like the adapter's other weights.
A is frozen; RL trains T, B's gate and, with `cross.reader: lora`, B's LoRA weights.

Gradient: B's log-probs are differentiable in y_k, so T gets the pathwise gradient through every
translation. The edge f_k -> B's thought k counts as a feedback edge, like f_k -> A's thought k: with
TBPTT window w the last w thoughts are live, rebuilt as functions of A's states through A's chain (the
first of them from a state computed from recorded constants), and earlier thoughts are A's recorded
vectors; so no gradient path crosses more than w edges, and T's gradient is the same for every w
(A's weights are frozen: only the gradient reaching A's chain changes). The rollout records A's prompt,
its thoughts and the translation's noise, so the recompute replays the same values (within 1e-5).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from neuralese import thoughts as T
from neuralese.config import ModelConfig, NeuraleseConfig, RunConfig
from neuralese.errors import AlignmentError, ConfigError
from neuralese.feedback import Draw
from neuralese.kinds import PolicyKind, register_policy_kind
from neuralese.models import check_model_folder, language_model
from neuralese.modes import get_mode, sequential
from neuralese.modes.latent import LatentMode
from neuralese.policy import NeuralesePolicy
from neuralese.recompute import Recomputed, scatter_token_logprobs
from neuralese.rollout import Rollout, Sampling
from neuralese.translate.chain import THINKER, think, thinker_thoughts
from neuralese.translate.maps import Translator, load_translator


class CrossModelPolicy(NeuralesePolicy):
    """Model B (the policy's model) answering from the translated thoughts of a frozen thinker A."""

    def __init__(
        self,
        model,
        tokenizer,
        config: NeuraleseConfig,
        thinker: NeuralesePolicy,
        translator: Translator,
        thinker_path: str = "",
    ):
        super().__init__(model, tokenizer, dataclasses.replace(config, projection="identity"))
        self.thinker = thinker.eval().requires_grad_(False)
        self.thinker_path = thinker_path
        self.adapter.add_module("translator", translator)  # trained and saved with the gate
        self._mode = CrossMode(self.config)

    @property
    def translator(self) -> Translator:
        return self.adapter.translator

    def thinker_prompts(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A's left-padded prompt ids and mask [B, Pa] for B's prompts [B, P]: the same texts in A's tokenizer.

        The texts are B's prompt tokens decoded; a prompt B's tokenizer does not give back as it read it,
        or that A's tokenizer can only read with unknown tokens, is an AlignmentError."""
        rows = [row[m.bool()] for row, m in zip(ids, mask)]
        texts = [self.tokenizer.decode(r, skip_special_tokens=True) for r in rows]
        again = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for text, row, back in zip(texts, rows, again):
            if row.tolist() != back:
                raise AlignmentError(
                    f"cross: the prompt {text!r} does not read back the same through model.path's "
                    "tokenizer, so the thinker cannot be given the same text"
                )
        a_ids, a_mask = self.thinker.encode(texts, device=ids.device)
        unk = self.thinker.tokenizer.unk_token_id
        if unk is not None and bool((a_ids[a_mask.bool()] == unk).any()):
            bad = next(t for t, r, m in zip(texts, a_ids, a_mask) if (r[m.bool()] == unk).any())
            raise AlignmentError(
                f"cross.thinker {self.thinker_path}: its tokenizer reads the prompt {bad!r} with "
                "unknown tokens; the thinker must read the texts the reader reads"
            )
        return a_ids, a_mask


class CrossMode(LatentMode):
    """Latent mode's layout for B, its thoughts A's translated ones (see the module docstring)."""

    @torch.no_grad()
    def rollout(self, policy, prompt_ids, prompt_mask, sampling: Sampling) -> Rollout:
        """A's K thoughts, translated; B's thought positions read them and B writes the answer. `thoughts`
        [B, S, D_B] (the shuffled control) replace the translations: drawn by nobody, they add no log-prob."""
        K, greedy, thoughts, generator = (
            self.thought_positions,
            sampling.greedy,
            sampling.thoughts,
            sampling.generator,
        )
        a_ids, a_mask = policy.thinker_prompts(prompt_ids, prompt_mask)
        chain = think(policy.thinker, a_ids, a_mask, K)
        noise = None
        if policy.adapter.sampler == "gaussian" and thoughts is None:
            shape = (*chain[f"{THINKER}thoughts"].shape[:2], policy.hidden_size)
            noise = torch.randn(shape, generator=generator, device=prompt_ids.device)
            noise = torch.zeros_like(noise) if greedy else noise
        fed = translate(policy, chain[f"{THINKER}thoughts"], noise) if thoughts is None else thoughts
        dec = sequential.Decoding.start(policy, prompt_ids, prompt_mask, greedy=greedy)
        sequential.decode(self, policy, dec, K, dataclasses.replace(sampling, thoughts=fed))
        ro = dec.record(policy, sampling.temperature)
        ro.extra.update(chain)
        if noise is None:
            return ro
        P = ro.prompt_length
        full = torch.zeros(*ro.input_ids.shape, policy.hidden_size, device=noise.device)
        full[:, P : P + K] = noise[:, : ro.input_ids.shape[1] - P]
        ro.draw = Draw(noise=sequential.masked(full, ro.feedback_mask))
        ro.logprobs = ro.logprobs + noise_density(policy, ro)
        return ro

    def recompute(
        self, policy, ro: Rollout, window, probe=None, need_hidden=False, thinker_probe=None
    ) -> Recomputed:
        """B's log-probs of `ro` with gradient through the translation into A's chain, truncated to `window`.

        probe [B, L, D_B]: zeros added to the translated thought fed into each position t+1 (at index t,
        as a fed-back source is indexed); thinker_probe [B, La, D_A]: zeros added to A's states that
        thoughts are computed from (neuralese.translate.chain)."""
        K, P = self.thought_positions, ro.prompt_length
        thought = slice(P, P + K)
        f = thinker_thoughts(policy.thinker, ro, K, window, thinker_probe)  # [B, K, D_A]
        noise = ro.draw.noise[:, thought] if ro.draw.noise is not None else None
        y = translate(policy, f, noise)  # [B, K, D_B]
        if probe is not None:
            y = y + probe[:, P - 1 : P + K - 1]
        embeds = policy.embed(ro.input_ids)  # [B, L, D_B]
        fb = ro.feedback_mask[:, thought, None]
        inputs = torch.where(fb, policy.adapter.combine(embeds[:, thought], y), embeds[:, thought])
        x = torch.cat([embeds[:, :P], inputs, embeds[:, P + K :]], dim=1)
        out = policy.model(
            inputs_embeds=x,
            attention_mask=ro.attention_mask,
            position_ids=ro.position_ids,
            output_hidden_states=need_hidden,
            return_dict=True,
        )
        positions = torch.arange(ro.input_ids.shape[1], device=x.device)
        logprobs, entropy = scatter_token_logprobs(ro, [(positions, out.logits)])
        return Recomputed(
            token_logprobs=logprobs,
            thought_logprobs=noise_density(policy, ro),
            entropy=entropy,
            hidden=out.hidden_states[-1] if need_hidden else None,
        )

    def describe(self, policy) -> str:
        t = policy.translator
        return (
            f"thinker A: {policy.thinker_path} (width {t.source_width}); translator: {t.kind} "
            f"{t.meta.get('source', '?')}->{t.meta.get('target', '?')} (width {t.target_width})"
        )

    def inspect_lenses(self, policy, ro: Rollout, positions: torch.Tensor):
        """For row 0's thoughts fed into `positions` [n]: what each decodes to through A's head (A's logit
        lens on f_k) and through B's head (B's logit lens on y_k): {name: (policy, states [n, D])}."""
        f = ro.extra[f"{THINKER}thoughts"][0, : len(positions)]  # [n, D_A]
        return {"A's head on f": (policy.thinker, f), "B's head on y": (policy, ro.feedback[0, positions])}


def translate(policy: CrossModelPolicy, f: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """y = T(f) (+ sigma * eps): A's thoughts [B, K, D_A] -> B's inputs [B, K, D_B]."""
    y = policy.translator(f.float())
    return y if noise is None else y + policy.config.noise_std * noise[:, : y.shape[1]]


def noise_density(policy: CrossModelPolicy, ro: Rollout) -> torch.Tensor:
    """[B, L] float64: log-density of the translation's recorded noise at B's thought positions, else 0.

    The noise is replayed on a live path (T is always recomputed), so its density is a constant there
    (neuralese.recompute: reparameterised draws); it is part of the policy's log-prob all the same."""
    out = torch.zeros(ro.input_ids.shape, dtype=torch.float64, device=ro.input_ids.device)
    if ro.draw.noise is None or policy.adapter.sampler != "gaussian":
        return out
    dens = T.standard_normal_logprob(ro.draw.noise, policy.config.noise_std)  # [B, L]
    return torch.where(ro.feedback_mask, dens, out)


# ----------------------------------------------------------------------------- building


def build_cross_policy(cfg: RunConfig, device: torch.device | str) -> CrossModelPolicy:
    """B at `model.path` (LoRA-wrapped with `cross.reader: lora`, else frozen), A at `cross.thinker` (frozen),
    the translator at `cross.translator`, checked against both."""
    cross = cfg.cross
    check_model_folder(cross.thinker, what="cross.thinker")
    translator = load_translator(cross.translator)
    model, tokenizer = language_model(cfg.model, device, cfg.neuralese.thought_token)  # latent: it reads one
    if cross.reader == "frozen":
        model.requires_grad_(False)
    thinker_cfg = dataclasses.replace(
        cfg.neuralese, projection="identity", noise_std=0.0, input=cross.thinker_input
    )
    thinker = NeuralesePolicy.from_pretrained(
        cross.thinker, ModelConfig(add_thought_token=cfg.model.add_thought_token), device, config=thinker_cfg
    )
    check_translator(translator, cfg, thinker.hidden_size, model.config.get_text_config().hidden_size)
    return CrossModelPolicy(model, tokenizer, cfg.neuralese, thinker, translator, cross.thinker).to(device)


def check_translator(t: Translator, cfg: RunConfig, thinker_width: int, reader_width: int) -> None:
    """An AlignmentError naming the translator's file unless it maps A's states (width, layer, folder) to B's."""
    cross, where = cfg.cross, Path(cfg.cross.translator) / "translator.json"
    wants = [
        (
            "source_width",
            t.source_width,
            thinker_width,
            f"cross.thinker {cross.thinker} has hidden size {thinker_width}",
        ),
        (
            "target_width",
            t.target_width,
            reader_width,
            f"model.path {cfg.model.path} has hidden size {reader_width}",
        ),
        (
            "layer",
            t.meta.get("layer", cfg.neuralese.layer),
            cfg.neuralese.layer,
            f"neuralese.layer is {cfg.neuralese.layer}",
        ),
    ]
    for key, got, want, why in wants:
        if got != want:
            raise AlignmentError(
                f"{where}: {key} is {got}, but {why}: a translator fitted for other models "
                "(fit one with `neuralese translate fit` on these two)"
            )
    for key, folder, name in (
        ("source_path", cross.thinker, "cross.thinker"),
        ("target_path", cfg.model.path, "model.path"),
    ):
        fitted = t.meta.get(key)
        if fitted is not None and Path(fitted).resolve() != Path(folder).resolve():
            raise AlignmentError(
                f"{where}: {key} is {fitted!r}, but {name} is {folder!r}: a translator fitted "
                "for other models (fit one with `neuralese translate fit` on these two)"
            )


def check_cross(cfg: RunConfig, source: str) -> None:
    """The rules of a cross-model run that span sections: a ConfigError naming the key."""
    cross, nz = cfg.cross, cfg.neuralese
    wants = [
        (
            cross.translator is not None,
            "cross.translator",
            "a translator folder (from `neuralese translate fit`) when cross.thinker is set",
            cross.translator,
        ),
        (
            get_mode(nz).prefix_thoughts,
            "neuralese.mode",
            "'latent' with cross.thinker (B's thought positions, "
            "filled one at a time before the answer, receive A's translated thoughts)",
            nz.mode,
        ),
        (
            nz.space == "hidden" and nz.embedding_weights == "softmax",
            "neuralese.space",
            "'hidden' with cross.thinker (translators map hidden-state thoughts)",
            nz.space,
        ),
        (
            isinstance(nz.layer, int),
            "neuralese.layer",
            "a layer index with cross.thinker (the layer the translator was fitted on)",
            nz.layer,
        ),
        (cfg.curriculum.stages == 0, "curriculum.stages", "0 with cross.thinker", cfg.curriculum.stages),
        (
            cfg.rl.rollout_engine == "hf",
            "rl.rollout_engine",
            "'hf' with cross.thinker",
            cfg.rl.rollout_engine,
        ),
        (
            (cfg.model.lora.r > 0) == (cross.reader == "lora"),
            "model.lora.r",
            f"{'> 0' if cross.reader == 'lora' else '0'} with cross.reader {cross.reader!r}",
            cfg.model.lora.r,
        ),
    ]
    for ok, key, what, value in wants:
        if not ok:
            raise ConfigError(f"{source}: key '{key}' must be {what}, got {value!r}")


CROSS = register_policy_kind(
    PolicyKind(
        "cross",
        build=build_cross_policy,
        check=check_cross,
        export_refusal="a cross-model run (cross.thinker) has two models and a translator, which an exported "
        "folder cannot hold yet; `neuralese eval` and `inspect` read the run folder",
    )
)
