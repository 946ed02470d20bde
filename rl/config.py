"""The typed run configuration and its strict YAML loader.

A recipe is a YAML file that only sets fields of `RunConfig`. Every field has a
docstring (the string below it); `neuralese config` prints them. Every numeric field declares
its range in its type (`PositiveFloat`, `Annotated[float, Range(0, 1)]`: rl.ranges), and a
new numeric field without one fails tests/test_ranges.py. Unknown keys, wrong types and
numbers out of range are errors that name the file, the key and what was expected. `--set a.b=v`
overrides use the same checks. The resolved config is written to the run folder, so a
run can be reproduced from its own `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from rl.codec.config import CodecConfig, check_codec
from rl.errors import ConfigError
from rl.io import describe_yaml_error, read_yaml
from rl.ranges import (
    AnyInt,
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    UnitFloat,
    check_ranges,
    range_of,
)

# ----------------------------------------------------------------------------- sections


@dataclass
class TinyModelConfig:
    """A tiny Llama- or Qwen2-style model built from a config, for stage 0 and tests."""

    arch: Literal["llama", "qwen2"] = "llama"
    """Model family; both are plain decoder-only causal LMs in transformers."""
    hidden_size: PositiveInt = 128
    """Width of the residual stream."""
    num_layers: PositiveInt = 4
    """Number of decoder layers."""
    num_heads: PositiveInt = 4
    """Attention heads (key/value heads are the same number)."""
    intermediate_size: PositiveInt = 512
    """Width of the MLP."""
    max_positions: PositiveInt = 256
    """Longest sequence the model accepts (prompt, thoughts and answer)."""
    init_std: PositiveFloat | None = None
    """Std of the initial weights; None uses 1/sqrt(hidden_size). transformers' 0.02 suits widths
    near 2,500: at width 128 it leaves attention almost uniform, and a tiny model then sits on a
    loss plateau for hundreds of steps before it finds which digits to attend to."""


@dataclass
class LoraSettings:
    """LoRA (peft) for RL. With `r: 0` all weights are trained."""

    r: NonNegativeInt = 0
    """LoRA rank; 0 turns LoRA off and trains every weight."""
    alpha: PositiveInt = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: Annotated[float, Range(0, 1, high_open=True)] = 0.0
    """Dropout on the LoRA input."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get adapters: peft's `all-linear` or a list of module names."""


@dataclass
class ModelConfig:
    """Where the language model comes from."""

    path: str | None = None
    """Local Hugging Face folder (model + tokenizer). RL and `eval` start from it; `pretrain`
    writes to it when `tiny` is set. Nothing is ever downloaded."""
    tiny: TinyModelConfig | None = None
    """If set, `neuralese pretrain` builds a fresh tiny model of this shape, with a tokenizer made
    from the environment's own data, instead of loading `path`."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype. float32 on CPU; bfloat16 on recent GPUs."""
    attn_implementation: str | None = None
    """transformers attention backend (`sdpa`, `eager`, `flash_attention_2`); None keeps the default."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint folder to run. Off unless you trust the folder."""
    add_thought_token: bool = False
    """Add the thought token to a tokenizer that lacks it (its embedding starts at the mean
    embedding). Without this, latent mode refuses such a tokenizer."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings for RL."""
    codec: str | None = None
    """Stage 0 with `tiny`: a codec folder (FSQ, `neuralese codec train`) whose codes are the tiny model's
    vocabulary: it reads and writes dense tokens, and its text is the codec's decoding of them (rl.codec.dense).
    The model folder keeps a copy of the codec, so RL, eval and export need nothing more."""


@dataclass
class EnvConfig:
    """The reward environment: task data and how it is scored."""

    name: str = "addition"
    """A built-in environment (`addition`, `multiplication`, ...) or a plug-in factory given as
    `path/to/file.py:make` or `pkg.module:make`."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to the environment factory."""
    train_size: PositiveInt = 20000
    """Problems drawn from the `train` split for stage 0 and RL."""
    test_size: PositiveInt = 500
    """Problems drawn from the evaluation split."""
    test_split: str = "test"
    """Split used for evaluation."""


@dataclass
class RewardConfig:
    """One reward function and its weight in the summed reward."""

    fn: str = "exact_match"
    """A built-in reward (see `rewards/`) or a plug-in `path/to/file.py:fn` / `pkg.module:fn`."""
    weight: FiniteFloat = 1.0
    """Weight of this reward in the sum."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments bound to the function (for example a length target)."""


@dataclass
class NeuraleseConfig:
    """The continuous-thought feedback: what is fed back, where, and how gradients flow."""

    mode: Literal["off", "latent", "hybrid", "channel", "refine"] = "latent"
    """Where thoughts go (rl.modes). `off`: the plain LM (token RL). `latent`: `num_thoughts` thought
    positions after the prompt, then the answer. `hybrid`: feedback at every generated position.
    `channel`: a persistent state of width `channel_width` beside every generated position, s_t =
    a * s_{t-1} + W_in f_t, fed back as W_out s_t: never softmaxed, never written as a token.
    `refine`: the `num_thoughts` thoughts (or, `refine_over: answer`, a drafted answer) filled in
    `refine_passes` parallel passes, each fed the previous pass's states (Jacobi iteration, PCCoT)."""
    num_thoughts: NonNegativeInt = 4
    """Latent mode (and refine over thoughts): number of thought positions K between the prompt and the answer."""
    channel_width: PositiveInt | None = None
    """Channel mode: width r of the persistent state; None takes a quarter of the model's hidden size."""
    channel_retention: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.5
    """Channel mode: the retention a (per state dimension, learned) at switch-on: the share of the state
    each position keeps from the one before."""
    refine_over: Literal["thoughts", "answer"] = "thoughts"
    """Refine mode: what the passes fill. `thoughts`: the K thought positions after the prompt, then the
    answer is written as in latent mode. `answer`: the answer itself, a greedy draft refined in parallel
    passes with a thought at every position, its tokens sampled in the last pass."""
    refine_passes: PositiveInt = 3
    """Refine mode: parallel passes T. With T equal to the positions filled, refine equals the sequential
    mode (latent, or hybrid at temperature 0); the TBPTT window counts passes."""
    space: Literal["hidden", "embedding", "mix", "pause"] = "hidden"
    """What a thought is (rl.thoughts). `hidden`: the hidden state of `layer`, RMS-matched to the token
    embeddings. `embedding`: a mixture of token embeddings weighted by the next-token distribution,
    softmax(logits / thought_temperature) @ E, a vector the model already reads (with a model whose chain
    of thought is written in tokens, a latent thought then starts as a soft version of the token it would
    have written). `mix`: a learned per-dimension mix of the two. `pause`: one learned vector for every
    thought, the same for every input (a control: thought positions without content)."""
    thought_temperature: PositiveFloat = 1.0
    """Temperature tau of the embedding-space weights (`embedding`, `mix`): softmax(logits / tau). Small
    tau approaches the greedy token's embedding; with `embedding_weights: gumbel`, a sampled token's."""
    embedding_weights: Literal["softmax", "gumbel", "multiplex"] = "softmax"
    """How the embedding-space weights are formed: `softmax` (deterministic, the expected embedding);
    `gumbel` (Gumbel-softmax soft tokens, SofT-GRPO: the perturbed log-probs are sampled, with their exact
    density in the policy's log-prob); `multiplex` (`multiplex_samples` tokens drawn from the next-token
    distribution, the mean of their embeddings fed; log-prob = the sum of theirs)."""
    multiplex_samples: PositiveInt = 4
    """Tokens drawn per multiplex thought."""
    mix_init: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.1
    """`space: mix`: the hidden part's share at switch-on (the rest is the embedding part)."""
    layer: AnyInt | Literal["mix"] = -1
    """Which hidden state is fed back: an index into transformers' `hidden_states` (-1 is the final
    post-norm state, -2 the output of the layer before the last), or `mix`, a learned softmax
    mixture of all of them."""
    projection: Literal["identity", "linear", "mlp"] = "linear"
    """Map from the RMS-matched hidden state to the feedback vector; `linear` starts as the
    identity, `mlp` is residual with a zero-initialised output so it does too."""
    input: Literal["gated_sum", "latent_only"] = "gated_sum"
    """`gated_sum`: next input = token embedding + tanh(lambda) * feedback (equals the pretrained
    model at switch-on). `latent_only`: the input is the feedback vector alone (Coconut)."""
    noise_std: NonNegativeFloat = 0.0
    """Std of Gaussian exploration noise on the feedback vector at rollout. When > 0 the noise
    log-density joins the policy log-probability. The feedback vector has the RMS of the token
    embeddings (`neuralese inspect` shows it), so pick sigma on that scale: far below it, the
    log-density turns float32 rounding of the hidden states into ratio noise (|eps| / sigma)."""
    tbptt_window: NonNegativeInt | Literal["full"] = 4
    """Truncated BPTT window k: how many feedback edges a gradient may cross. 0 treats every
    fed-back vector as a recorded constant (one parallel pass); `full` is exact BPTT. Channel mode:
    recurrence steps of the state; refine mode: passes (the last k are differentiable)."""
    thought_token: str = "<thought>"
    """The reserved token whose embedding starts each thought position (latent mode, refine over thoughts)."""


@dataclass
class PretrainConfig:
    """Stage 0: train or fine-tune the LM as-is (feedback off) with TRL's SFTTrainer."""

    output_dir: str | None = None
    """Where the as-is model is saved; defaults to `model.path`."""
    max_steps: PositiveInt = 1200
    """Optimizer steps."""
    batch_size: PositiveInt = 64
    """Examples per optimizer step."""
    learning_rate: PositiveFloat = 1e-3
    """Peak learning rate."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (`cosine`, `linear`, `constant`, ...)."""
    warmup_steps: NonNegativeInt = 50
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for a large model, about a third
    more compute (TRL's `SFTConfig` turns it on by default; tiny models do not need it)."""
    thought_tokens_max: NonNegativeInt = 0
    """Insert between 0 and this many thought tokens after each prompt (uniformly at random), so
    the as-is model already reads thought positions when latent mode switches on."""
    plain_fraction: UnitFloat = 0.5
    """With thought-token formats (`thought_tokens_max`, `elided_steps`): the share of `max_steps` trained
    on the plain target first; the rest mixes the formats in. Formats a model cannot yet answer (a
    step dropped that only a deeper model could compute) hide the lookups it must learn first: trained
    on the mixture from the start, a 2-layer model learned none in 1,500 steps on pointer chasing, while
    the plain chain alone was learned in under 1,000 (BENCHMARKS.md, stage 0)."""
    elided_steps: bool = False
    """Train the formats of the RL curriculum (`curriculum`): each example drops its first s written
    steps (s uniform in 0..curriculum.stages) for thoughts_per_step * s thought tokens and keeps the
    rest, so at stage s the as-is model already writes from step s+1 on. Feedback is off: the thought
    tokens are positions without content, and no latent is supervised. Needs an environment with a
    `written_steps` column (the pieces the chain-of-thought `completion` begins with)."""


@dataclass
class RLConfig:
    """Stage 1: the RL algorithm and its sizes. Defaults follow TRL's GRPOConfig where it has one."""

    algorithm: Literal["grpo", "dr_grpo", "rloo", "ppo"] = "grpo"
    """Advantage estimator: group-relative (GRPO), GRPO without std scaling (Dr.GRPO),
    leave-one-out (RLOO), or PPO with a value head and GAE."""
    steps: NonNegativeInt = 100
    """RL steps (one rollout batch each)."""
    prompts_per_step: PositiveInt = 16
    """Distinct prompts per step, over all processes."""
    samples_per_prompt: PositiveInt = 8
    """Completions sampled per prompt (the group size G), over all processes."""
    micro_batch_per_device: PositiveInt = 32
    """Sequences per forward/backward on one device; gradients accumulate over micro-batches."""
    num_iterations: PositiveInt = 1
    """Updates per rollout batch (mu in the GRPO paper)."""
    learning_rate: PositiveFloat = 1e-6
    """Learning rate of the language model (or its LoRA adapters)."""
    feedback_learning_rate: PositiveFloat | None = None
    """Learning rate of the feedback adapter and gate; None uses `learning_rate`."""
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule over `steps`."""
    warmup_steps: NonNegativeInt = 0
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""
    max_grad_norm: NonNegativeFloat = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    temperature: PositiveFloat = 1.0
    """Sampling temperature of the rollouts (log-probs are taken at this temperature)."""
    max_new_tokens: PositiveInt = 32
    """Most answer tokens per sample (thought positions come on top)."""
    beta: NonNegativeFloat = 0.0
    """KL coefficient to the reference (the model with feedback off, and adapters off with LoRA)."""
    kl_estimator: Literal["k1", "k3"] = "k3"
    """KL estimator: k1 = log-ratio, k3 = exp(-x) - 1 + x (Schulman), as in TRL."""
    kl_ratio_correction: bool = True
    """Weigh the per-token KL by the importance ratio (TRL's `use_bias_correction_kl`, DeepSeek-V3.2)."""
    epsilon_low: Annotated[float, Range(0, 1, high_open=True)] = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: NonNegativeFloat = 0.2
    """Upper clip range of the importance ratio (DAPO raises it, e.g. 0.28)."""
    loss_aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    """`token`: mean over all loss positions of the batch (DAPO, TRL's default); `sequence`: mean per
    sequence, then over sequences (original GRPO); `dr_grpo`: sum divided by batch x max length."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the reward std of the group, of the whole batch, or not at all."""
    gamma: UnitFloat = 1.0
    """PPO: discount."""
    gae_lambda: UnitFloat = 0.95
    """PPO: GAE lambda."""
    value_clip: NonNegativeFloat = 0.2
    """PPO: clip range of the value update."""
    value_coef: NonNegativeFloat = 0.5
    """PPO: weight of the value loss."""
    value_learning_rate: PositiveFloat | None = None
    """PPO: learning rate of the value head; None uses `learning_rate`."""
    max_nonfinite_steps: PositiveInt = 3
    """Stop after this many steps in a row with a non-finite loss or gradient (each one is skipped)."""
    reward_timeout_s: PositiveFloat = 60.0
    """A reward call that takes longer than this fails with an error naming the function."""
    rollout_engine: Literal["hf", "vllm"] = "hf"
    """Who samples the answers: `hf`, the policy's own batched KV-cache loop (every mode); or `vllm`
    (the optional extra; modes `off` and `latent`: the policy computes the thoughts, vLLM decodes the
    answer from the prompt and thought embeddings). Settings in the `vllm` section."""


@dataclass
class VLLMConfig:
    """The vLLM rollout engine, used when `rl.rollout_engine: vllm` (pip install 'neuralese[vllm]')."""

    gpu_memory_utilization: Annotated[float, Range(0, 1, low_open=True)] = 0.3
    """Share of the GPU's memory vLLM may take for weights and KV cache; training keeps the rest.
    On a CPU build it is the share of host memory, unless `kv_cache_memory_bytes` is set."""
    kv_cache_memory_bytes: PositiveInt | None = None
    """A fixed KV-cache size in bytes, instead of sizing it from `gpu_memory_utilization`."""
    max_model_len: PositiveInt | None = None
    """Longest prompt + thoughts + answer vLLM must hold; None takes the model's own limit."""
    enforce_eager: bool = True
    """Run without CUDA graphs: quicker to start, slower per token."""


@dataclass
class CurriculumConfig:
    """An RL curriculum from written to latent steps (rl.curriculum): Coconut's schedule, with every
    stage RL on the task reward and no latent ever supervised. Stage s puts `thoughts_per_step * s`
    latent thoughts where the first s written steps of the environment's chain were; the model writes
    the rest. Latent mode (and refine over thoughts) only; 0 stages turns it off."""

    stages: NonNegativeInt = 0
    """The last stage S (stages run from `start` to S); 0 = no curriculum (`neuralese.num_thoughts` holds)."""
    thoughts_per_step: PositiveInt = 1
    """c: thoughts that stand for one written step."""
    start: NonNegativeInt = 1
    """The stage RL begins at (0 = every step written: token chain-of-thought with feedback on)."""
    advance: Literal["steps", "plateau"] = "steps"
    """When a stage ends: after `steps_per_stage` RL steps, or when the training reward's moving mean has
    not risen by `min_delta` for `patience` steps (at most `steps_per_stage` steps either way)."""
    steps_per_stage: PositiveInt = 50
    """RL steps per stage (the most a stage lasts with `advance: plateau`)."""
    patience: PositiveInt = 20
    """`advance: plateau`: steps without improvement before the next stage."""
    min_delta: NonNegativeFloat = 0.01
    """`advance: plateau`: the rise of the reward's moving mean (over `patience` steps) that counts."""
    tokens_per_step: NonNegativeInt = 0
    """The tokens one written step takes. When > 0, stage s answers within `max_new_tokens` minus
    `tokens_per_step * s` (rollouts and evaluation; at least 1): the dropped steps are not written
    again, or the answer does not fit. 0: the budget stays, and the policy may write them anyway."""


@dataclass
class EvalConfig:
    """`neuralese eval` and the evaluation inside `train`."""

    n: PositiveInt = 200
    """Problems evaluated."""
    batch_size: PositiveInt = 64
    """Prompts per generation batch."""
    samples: NonNegativeInt = 0
    """If > 0, also sample this many completions per problem and report pass@1 and pass@k."""
    temperature: PositiveFloat = 1.0
    """Sampling temperature for pass@k."""
    max_new_tokens: PositiveInt = 32
    """Most answer tokens per problem."""


@dataclass
class GearConfig:
    """One gear of a reward-model chain: a new reward model trained on the labels the previous one
    gives to the policy's samples of more prompts (`neuralese reward-model train`)."""

    prompts: PositiveInt = 2048
    """Train prompts whose samples the previous reward model labels (new ones, after the prompts of
    the gears before)."""
    min_margin: NonNegativeFloat = 0.0
    """A pair is made only where the previous model's raw scores of its two completions differ by at
    least this much."""
    max_steps: PositiveInt | None = None
    """Optimizer steps of this gear; None uses `reward_model.max_steps`."""


@dataclass
class RewardModelConfig:
    """`neuralese reward-model train`: a reward model (a sequence classifier with one logit) trained
    with TRL's RewardTrainer on preference pairs, and optionally a chain of `gears` after it."""

    output_dir: str | None = None
    """Where the models go (`gear-0/`, `gear-1/`, ... and `report.json`); None: `<output_dir>/reward-model`."""
    base: str | None = None
    """A local model folder to start from (a causal LM gets a new one-logit head); None builds a fresh
    tiny model of shape `tiny`, with a tokenizer made from the environment's own text."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the tiny reward model built when `base` is None."""
    pairs_file: str | None = None
    """A JSON Lines file of preference pairs (`prompt`, `chosen`, `rejected`) for gear 0; None makes the
    pairs from the policy's own samples, judged right or wrong by the environment's check."""
    policy: str | None = None
    """The model folder whose samples make the pairs (and the gears' pools); None uses `model.path`."""
    prompts: PositiveInt = 512
    """Train prompts whose samples make gear 0's pairs."""
    held_out_prompts: PositiveInt = 200
    """Prompts of `env.test_split` whose samples, judged by the environment's check, make the held-out
    pairs every gear is measured on (pairwise accuracy) and the calibration is fitted to."""
    samples_per_prompt: Annotated[int, Range(2)] = 8
    """Completions sampled per prompt."""
    temperature: PositiveFloat = 1.0
    """Sampling temperature of those completions."""
    max_new_tokens: PositiveInt = 32
    """Most tokens per sampled completion."""
    pairs_per_prompt: PositiveInt = 4
    """Most pairs made from one prompt's samples (distinct completions only)."""
    held_out_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.1
    """With `pairs_file`: the share of its pairs held out for measuring (the rest train)."""
    max_steps: PositiveInt = 300
    """Optimizer steps per gear."""
    batch_size: PositiveInt = 32
    """Pairs per optimizer step."""
    learning_rate: PositiveFloat = 1e-3
    """Peak learning rate."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (`cosine`, `linear`, `constant`, ...)."""
    warmup_steps: NonNegativeInt = 10
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""
    center_rewards_coefficient: NonNegativeFloat = 0.0
    """TRL's pull of the scores towards 0 (Eisenstein et al. 2023; they suggest 0.01); 0 turns it off."""
    gears: list[GearConfig] = field(default_factory=list)
    """Gears after gear 0, trained and chained in order; empty: gear 0 only."""


@dataclass
class LogConfig:
    """What a run writes and how often."""

    every_steps: PositiveInt = 1
    """Write a metrics line every this many steps."""
    completions_every: PositiveInt = 10
    """Write sample completions to `completions.jsonl` every this many steps."""
    save_every: PositiveInt = 50
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: PositiveInt = 2
    """Newest complete checkpoints kept; older ones are deleted."""
    eval_every: NonNegativeInt = 0
    """Greedy accuracy on `eval.n` test problems every this many steps; 0 only at the end."""
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    """accelerate trackers (`tensorboard`, `wandb`); an empty list disables them."""


@dataclass
class RunConfig:
    """A whole run: stage 0 (`pretrain`), stage 1 (`train`) and evaluation."""

    seed: Seed = 0
    """Seeds Python, NumPy, torch, data order and sampling."""
    data_seed: Seed | None = None
    """RL only: seeds which problems the train and evaluation splits draw and the order prompts come
    in; None uses `seed`. Fixing it while `seed` varies gives runs that see the same prompts and are
    scored on the same problems, differing only in sampling (scripts/ablate.py's seeds)."""
    output_dir: str = "runs/default"
    """The run folder: config.yaml, metrics.jsonl, completions.jsonl, checkpoints/, report.png."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The language model."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The reward environment."""
    rewards: list[RewardConfig] | None = None
    """Reward functions and weights; None uses the environment's own `reward_funcs`, weight 1."""
    neuralese: NeuraleseConfig = field(default_factory=NeuraleseConfig)
    """Continuous-thought feedback."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Stage 0."""
    rl: RLConfig = field(default_factory=RLConfig)
    """Stage 1."""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """Stage 1's schedule from written to latent steps (latent mode)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """The vLLM rollout engine (when `rl.rollout_engine: vllm`)."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Training reward models here (`neuralese reward-model train`); RL uses one through `rewards`."""
    codec: CodecConfig = field(default_factory=CodecConfig)
    """Training a text codec here (`neuralese codec train`); `model.codec` builds a dense-token model on one."""
    log: LogConfig = field(default_factory=LogConfig)
    """Logging and checkpoints."""


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe, apply `key.sub=value` overrides, and return a checked RunConfig."""
    path = Path(path)
    data = read_yaml(path, "recipe file", ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        apply_override(data, item, source=str(path))
    cfg = from_dict(RunConfig, data, source=str(path))
    validate(cfg, source=str(path))
    return cfg


def apply_override(data: dict, item: str, source: str = "--set") -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (`1e-3`, `[a, b]`, `null`)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {describe_yaml_error(e)}") from None
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {p!r} is not a section in {source}")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, data: Any, source: str = "<dict>", prefix: str = ""):
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'the recipe'} must be a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            choices = [f"{prefix}{n}" for n in names]
            near = difflib.get_close_matches(full, choices, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        kwargs[key] = _coerce(hints[key], value, source, full)
    return cls(**kwargs)


YAML_TRUE = ("on", "yes", "true", "y")
YAML_FALSE = ("off", "no", "false", "n")


def _coerce(tp: Any, value: Any, source: str, key: str):
    """Check `value` against type hint `tp`; returns the value (dataclasses built, ints widened)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        shaped = [o for o in options if _same_shape(o, value)]
        if len(shaped) == 1:  # a mapping for a section, a list for a list: its own error names the inner key
            return _coerce(shaped[0], value, source, key)
        for option in options:
            try:
                return _coerce(option, value, source, key)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: key '{key}' expects {_describe(tp)}, got {_show(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: key '{key}' expects null, got {_show(value)}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads `off`, `no` as false and `on`, `yes` as true
            spellings = YAML_TRUE if value else YAML_FALSE
            matches = [o for o in typing.get_args(tp) if isinstance(o, str) and o.lower() in spellings]
            if len(matches) == 1:
                return matches[0]
        raise ConfigError(f"{source}: key '{key}' expects one of {_describe(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{source}: key '{key}' expects {tp.__name__} (a mapping of its fields), got {_show(value)}"
            )
        return from_dict(tp, {} if value is None else value, source, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{key}' expects a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {_show(value)}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{source}: key '{key}' expects {_describe(tp)}, got {_show(value)}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:  # a declared range: `float > 0`, `int in [0, 4294967295]`
        rng = range_of(tp)
        shown = "" if rng is None or rng == Range() else f" {rng}"
        return _describe(typing.get_args(tp)[0]) + shown
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(t) for t in typing.get_args(tp))
    if origin is Literal:
        return ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _same_shape(tp: Any, value: Any) -> bool:
    """A mapping for a section or dict type, a list for a list type."""
    if isinstance(value, dict):
        return _is_section(tp) or typing.get_origin(tp) is dict
    return isinstance(value, list) and typing.get_origin(tp) is list


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)  # a Range is a dataclass instance


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    """Every declared range (rl.ranges), then the checks that span fields; `load_config` calls it,
    and so do the trainer and stage 0 for a config built in Python."""
    check_ranges(cfg, source)

    def need(ok: bool, key: str, what: str, value: Any):
        if not ok:
            raise ConfigError(f"{source}: key '{key}' must be {what}, got {value!r}")

    rl, nz = cfg.rl, cfg.neuralese
    if rl.algorithm in ("grpo", "dr_grpo", "rloo"):
        need(
            rl.samples_per_prompt >= 2,
            "rl.samples_per_prompt",
            f">= 2 for {rl.algorithm} (group-relative advantages need a group)",
            rl.samples_per_prompt,
        )
    if rl.rollout_engine == "vllm":
        need(nz.mode in ("off", "latent"), "rl.rollout_engine",
             f"'hf' in {nz.mode} mode (vLLM decodes after latent thoughts only: feedback at written tokens "
             "and parallel passes are beyond its decoding)", "vllm")  # fmt: skip
    if nz.embedding_weights != "softmax":
        need(nz.space in ("embedding", "mix"), "neuralese.embedding_weights",
             f"'softmax' unless neuralese.space is 'embedding' or 'mix' (space is {nz.space!r})",
             nz.embedding_weights)  # fmt: skip
        need(nz.noise_std == 0, "neuralese.noise_std",
             f"0 with embedding_weights {nz.embedding_weights!r} (one sampler per thought)", nz.noise_std)  # fmt: skip
    cur = cfg.curriculum
    thoughts_first = nz.mode == "latent" or (nz.mode == "refine" and nz.refine_over == "thoughts")
    if thoughts_first and cur.stages == 0:
        need(nz.num_thoughts >= 1, "neuralese.num_thoughts", f">= 1 in {nz.mode} mode", nz.num_thoughts)
    if isinstance(nz.tbptt_window, int) and nz.mode == "latent" and cur.stages == 0:
        need(
            nz.tbptt_window <= nz.num_thoughts,
            "neuralese.tbptt_window",
            f"<= neuralese.num_thoughts ({nz.num_thoughts}) in latent mode, or 'full'",
            nz.tbptt_window,
        )
    if isinstance(nz.tbptt_window, int) and nz.mode == "refine":
        need(nz.tbptt_window <= nz.refine_passes, "neuralese.tbptt_window",
             f"<= neuralese.refine_passes ({nz.refine_passes}) in refine mode (it counts passes), or 'full'",
             nz.tbptt_window)  # fmt: skip
    if isinstance(nz.layer, int):
        need(nz.layer != 0, "neuralese.layer", "a layer index other than 0 (0 is the embedding output)", 0)
    if cur.stages > 0:
        need(thoughts_first, "curriculum.stages",
             "0 unless neuralese.mode is 'latent' or 'refine' over thoughts (it sets the thoughts before the answer)",
             cur.stages)  # fmt: skip
        need(cur.start <= cur.stages, "curriculum.start", f"in 0..curriculum.stages ({cur.stages})",
             cur.start)  # fmt: skip
    if cfg.pretrain.elided_steps:
        need(cur.stages > 0, "pretrain.elided_steps", "false unless curriculum.stages > 0 (the formats it trains)",
             True)  # fmt: skip
    for key, tiny in (("model.tiny", cfg.model.tiny), ("reward_model.tiny", cfg.reward_model.tiny)):
        if tiny is not None:  # transformers would only fail on it once the model is built
            need(tiny.hidden_size % tiny.num_heads == 0, f"{key}.num_heads",
                 f"a divisor of {key}.hidden_size ({tiny.hidden_size})", tiny.num_heads)  # fmt: skip
    check_codec(cfg.codec, source)
    if cfg.model.codec is not None:
        need(cfg.model.tiny is not None, "model.codec",
             "null unless model.tiny is set (stage 0 builds the dense model; a dense model folder keeps its codec)",
             cfg.model.codec)  # fmt: skip
    if cfg.rewards is not None:
        need(len(cfg.rewards) >= 1, "rewards", "a non-empty list (or null for the env's own)", cfg.rewards)


def to_dict(cfg) -> dict:
    """The config as plain data (for YAML and JSON)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config; `load_config` reads it back to the same RunConfig."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, docstring) for every field, for `neuralese config` and the docs."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    rows = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = next((t for t in (tp, *typing.get_args(tp)) if _is_section(t)), None)
        if sub is not None and typing.get_origin(tp) is not list:
            rows.append((f"{prefix}{f.name}", sub.__name__, None, docs.get(f.name, "")))
            rows.extend(describe_fields(sub, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f"{prefix}{f.name}", _describe(tp), default, docs.get(f.name, "")))
    return rows
