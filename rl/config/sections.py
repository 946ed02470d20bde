"""The sections of a recipe: one dataclass each, a docstring per field, each number's range in its type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from neuralese.config.codec import CodecConfig
from neuralese.config.planner import PlannerConfig
from neuralese.config.translate import CrossConfig, TranslateConfig
from neuralese.ranges import (
    AnyInt,
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    UnitFloat,
)

# ----------------------------------------------------------------------------- sections


@dataclass
class TinyModelConfig:
    """A tiny Llama-, Qwen2- or GPT-2-style model built from a config, for stage 0 and tests."""

    arch: Literal["llama", "qwen2", "gpt2"] = "llama"
    """Model family; all are plain decoder-only causal LMs in transformers. `gpt2` (learned absolute
    positions, LayerNorm, GELU MLP) is the architecture of CoT2's MNNS models; its dropout is off, since
    the RL recompute runs in training mode and must equal the rollout's log-probs."""
    hidden_size: PositiveInt = 128
    """Width of the residual stream."""
    num_layers: PositiveInt = 4
    """Number of decoder layers."""
    num_heads: PositiveInt = 4
    """Attention heads (key/value heads are the same number)."""
    intermediate_size: PositiveInt = 512
    """Width of the MLP."""
    max_positions: PositiveInt = 256
    """The model's `max_position_embeddings`: the longest sequence (prompt, thoughts and answer) it is
    meant for. Both families use rotary positions and run past it without an error or a warning, so
    size it to the environment's data: nothing stops a longer one."""
    init_std: PositiveFloat | None = None
    """Std of the initial weights; None uses 1/sqrt(hidden_size). transformers' 0.02 suits widths
    near 2,500: at width 128 it leaves attention almost uniform, and a tiny model then sits on a
    loss plateau for hundreds of steps before it finds which digits to attend to."""
    dropout: Annotated[float, Range(0, 1, high_open=True)] = 0.0
    """Dropout while stage 0 trains (GPT-2: embeddings, residual stream and attention weights; Llama and
    Qwen2: attention weights). The saved model's config says 0, so the model RL loads has none: the
    recompute runs in training mode and must equal the rollout's log-probs. CoT2 trains its GPT-2 with
    transformers' default of 0.1; without dropout a tiny GPT-2 memorises MNNS's few thousand train
    sequences and answers held-out ones worse."""
    number_pieces: bool = False
    """Stage 0's tokenizer cuts a whole number, with its sign if it has one (`+12`, `-3`, `7`), into one
    piece instead of one piece a digit, so that a value is one position: a written step is then one
    token, as a thought is one position (MNNS's partial sums, `env.args.values`). Numbers that follow
    one another need a sign or a separator between them to stay apart."""


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
    vocabulary: it reads and writes dense tokens, and its text is the codec's decoding of them (neuralese.codec.dense).
    The model folder keeps a copy of the codec, so RL, eval and export need nothing more."""
    codec_embedding: Literal["atomic", "composed"] = "atomic"
    """With `codec`: a code's embedding (tied with the head) in stage 0. `atomic`: a row of its own, as for any
    token. `composed`: that row (starting at 0) plus the sum over its slots of a learned per-slot map of a learned
    embedding of the text token the codec decodes that slot to (neuralese.codec.dense), so codes that share a token share
    a part and learn together. The folder holds the rows either way: RL trains them as a plain table."""


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
    """Where thoughts go (neuralese.modes). `off`: the plain LM (token RL). `latent`: `num_thoughts` thought
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
    """What a thought is (neuralese.thoughts). `hidden`: the hidden state of `layer`, RMS-matched to the token
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
    recurrence steps of the state; refine mode: passes (the last k are differentiable). Latent mode
    refuses k > `num_thoughts` and refine mode k > `refine_passes`: with fewer than 4 of them, set k too."""
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
    objective: Literal["text", "mixtures"] = "text"
    """What stage 0 trains: `text`, the environment's target text (TRL's SFTTrainer); `mixtures`, CoT2's
    continuous supervision (neuralese.mixtures): at each written step the teacher's mixture of the
    embeddings of every value the step can reach is fed in and the step's prediction is trained toward
    that distribution, then the answer. Needs rows with `reachable` and `reachable_weights` (MNNS in the
    values format, reach, ProsQA); its as-is accuracy is then measured reading `neuralese.num_thoughts`
    soft thoughts (embedding space, temperature 1, `latent_only`), as CoT2 evaluates."""
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

    algorithm: Literal["grpo", "dr_grpo", "rloo", "ppo", "raft"] = "grpo"
    """Advantage estimator: group-relative (GRPO), GRPO without std scaling (Dr.GRPO),
    leave-one-out (RLOO), PPO with a value head and GAE; or RAFT (reward-ranked fine-tuning,
    expert iteration): learn from positive samples only, maximising the log-probability of the
    samples the reward keeps (`raft_min_reward`, `raft_top_k`), thoughts included."""
    steps: NonNegativeInt = 100
    """RL steps (one rollout batch each)."""
    prompts_per_step: PositiveInt = 16
    """Distinct prompts per step, over all processes."""
    samples_per_prompt: PositiveInt = 8
    """Completions sampled per prompt (the group size G), over all processes."""
    micro_batch_per_device: PositiveInt = 32
    """Sequences per forward/backward on one device; gradients accumulate over micro-batches."""
    num_iterations: PositiveInt = 1
    """Updates per rollout batch (mu in the GRPO paper); in RAFT's round mode, epochs over each
    round's pool."""
    learning_rate: PositiveFloat = 1e-6
    """Learning rate of the language model (or its LoRA adapters)."""
    feedback_learning_rate: PositiveFloat | None = None
    """Learning rate of the feedback adapter and gate; None uses `learning_rate`."""
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule over `steps`."""
    warmup_steps: NonNegativeInt = 0
    """Linear warm-up, in optimizer steps (`steps` x `num_iterations` in the run); at most that many."""
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
    raft_min_reward: FiniteFloat | None = 1.0
    """RAFT: keep a sample whose reward is at least this (1: right by a check that scores 0 or 1);
    None keeps by rank alone (`raft_top_k`). The reward is the run's (`rewards`, else the
    environment's own), so the filter may be the check, any reward, a reward model or a cascade."""
    raft_top_k: PositiveInt | None = None
    """RAFT: keep at most the k highest-rewarded samples of each group (of those at least
    `raft_min_reward`; ties go to the earlier sample); None keeps every one that clears it.
    `raft_min_reward: null` with `raft_top_k: 1` is RAFT's best of each group."""
    raft_samples_per_round: NonNegativeInt = 0
    """RAFT round mode (expert iteration, ReST-EM): 0 learns at every step from that step's kept
    samples; N > 0 gathers the kept samples of N sampled completions (N / (prompts_per_step x
    samples_per_prompt) steps, all from the policy as it was when the round began) into a pool and
    trains on it at the round's last step, `num_iterations` epochs of as many optimizer steps as
    the round had steps. A multiple of prompts_per_step x samples_per_prompt."""
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
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling (verl's `filter_groups`): a step keeps drawing `prompts_per_step` prompts
    until it holds that many groups whose rewards differ, and learns from those alone (GRPO, Dr. GRPO,
    RLOO). A step short after `dynamic_sampling_max_draws` draws is filled with groups without spread.
    Logged as `sampling/...` (neuralese.dynamic)."""
    dynamic_sampling_max_draws: PositiveInt = 4
    """Dynamic sampling: the most draws of `prompts_per_step` prompts one step makes."""
    max_nonfinite_steps: PositiveInt = 3
    """Stop after this many steps in a row with a non-finite loss or gradient (each one is skipped)."""
    reward_timeout_s: PositiveFloat = 60.0
    """A reward call that takes longer than this fails with an error naming the function."""
    collective_timeout_s: PositiveFloat = 1800.0
    """Several processes: how long one waits in a collective (a gather of rewards, a gradient
    average) for the others before the run stops with an error. A process that dies is noticed at
    once (its connections close); this bounds the wait on one that hangs or whose machine is gone."""
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
    """An RL curriculum from written to latent steps (neuralese.curriculum): Coconut's schedule, with every
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
    """If > 0, also sample this many completions per problem and report pass@1 and pass@k (in `train`,
    at step 0 and at the end; the evaluations every `log.eval_every` steps are greedy)."""
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
    eval_at_start: bool = True
    """Also evaluate before the first step (step 0 of metrics.jsonl and report.png, `start` in the final
    line): what the model scores as it is, the baseline RL is measured against."""
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
    scored on the same problems, differing only in sampling (the seeds of `neuralese ablate`)."""
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
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    """Translators between models' thoughts (`neuralese translate fit`)."""
    cross: CrossConfig = field(default_factory=CrossConfig)
    """Thinking across models: another model's translated thoughts in this model's thought positions."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """A planner over codes and its decoder: their stage 0 (`neuralese planner pretrain`)."""
    log: LogConfig = field(default_factory=LogConfig)
    """Logging and checkpoints."""

    @property
    def policy_kind(self) -> str | None:
        """The kind of policy this run needs beyond the plain one (neuralese.kinds): `cross`
        when `cross.thinker` is set, else None."""
        return "cross" if self.cross.thinker is not None else None
