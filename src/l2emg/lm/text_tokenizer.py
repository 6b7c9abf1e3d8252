"""The embedded backbone's text tokenizer: a small byte-level BPE trained offline on caption text.

No pretrained tokenizer can be downloaded here, so the embedded tiny LLaMA gets its own, trained with
the `tokenizers` library on the captions and the instruction it will be prompted with. It behaves like
LLaMA's: it prepends `<s>` when asked to add special tokens, knows `</s>` (end of text), `<pad>` and
`<unk>`, and lowercases text (captions carry no case information worth a vocabulary slot). Byte-level
pre-tokenisation means every string encodes (no `<unk>` in practice) and decoding gives the
lowercased text back exactly.

It is wrapped as a `transformers` fast tokenizer so that it saves, loads and behaves like any other
Hugging Face tokenizer (`save_pretrained` / `AutoTokenizer.from_pretrained`).
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, BOS, EOS, PAD)  # ids 0, 1, 2, 3


def build_text_tokenizer(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a lowercase byte-level BPE tokenizer on `texts` (captions + the instruction).

    The vocabulary holds the 4 special tokens, the 256 byte symbols and up to
    `vocab_size - 260` merges (fewer if the text has fewer pairs seen `min_frequency` times).
    """
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("build_text_tokenizer needs at least one non-empty text")
    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (specials + 256 bytes), got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Like LLaMA: `<s>` first when special tokens are added; nothing appended.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
