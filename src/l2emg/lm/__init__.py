"""The language-model layer: backbone, motion vocabulary, prompts and constrained generation.

    from l2emg.lm import MotionLM, encode_example, collate, generate_codes

Modules: `text_tokenizer` (BPE for the embedded model), `backbone` (load any HF causal LM / build
the embedded tiny LLaMA), `vocab` (motion tokens and their fixed embeddings), `prompts` (instruction
+ caption -> tokens, targets, batches), `generate` (KV-cached constrained decoding, codes -> motion),
`motion_lm` (the bundle and how it is saved). A run's generator is `l2emg.generator`. Importing this package imports
`transformers` (a few seconds); the CLI imports it lazily.
"""

from l2emg.lm.backbone import build_tiny_backbone, load_backbone
from l2emg.lm.generate import codes_to_motion, generate_codes
from l2emg.lm.motion_lm import MotionLM
from l2emg.lm.prompts import INSTRUCTION, collate, encode_example, encode_prompts, format_prompt
from l2emg.lm.text_tokenizer import build_text_tokenizer
from l2emg.lm.vocab import MotionVocab, add_motion_tokens, configure_motion_embeddings

__all__ = [
    "INSTRUCTION", "MotionLM", "MotionVocab", "add_motion_tokens", "build_text_tokenizer",
    "build_tiny_backbone", "codes_to_motion", "collate", "configure_motion_embeddings", "encode_example",
    "encode_prompts", "format_prompt", "generate_codes", "load_backbone",
]
