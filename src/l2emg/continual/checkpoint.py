"""The one adapter checkpoint format: a method's state after a stream step.

    checkpoints/step_XX/
        adapters.safetensors   every tensor the method trains or keeps (`ContinualMethod.adapter_state`)
        structure.json         {"method", "step", "structure"}: what to rebuild before loading tensors
        train_log.json         the step's training log

Written atomically (a killed write leaves the previous checkpoint intact); read without unpickling.
`restore_method` rebuilds a trained method around a language model through the method registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from l2emg.config import Config
from l2emg.continual.methods import ContinualMethod, method_class
from l2emg.errors import CheckpointError
from l2emg.lm.motion_lm import MotionLM
from l2emg.utils.io import atomic_save_dir, load_json, save_json

ADAPTER_FILE = "adapters.safetensors"
STRUCTURE_FILE = "structure.json"
TRAIN_LOG_FILE = "train_log.json"


def save_checkpoint(method: ContinualMethod, method_name: str, step: int, log: dict[str, Any], target: Path) -> None:
    """Write the method's checkpoint after `step` into `target` (replacing an older one atomically)."""
    tensors = method.adapter_state()
    structure = {"method": method_name, "step": step, "structure": method.structure()}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / ADAPTER_FILE))
        save_json(tmp / STRUCTURE_FILE, structure)
        save_json(tmp / TRAIN_LOG_FILE, log)

    atomic_save_dir(target, write)


def load_checkpoint(method: ContinualMethod, checkpoint: Path, method_name: str) -> None:
    """Rebuild a set-up method's structure and load its adapter tensors from a checkpoint folder."""
    structure_path = checkpoint / STRUCTURE_FILE
    tensors_path = checkpoint / ADAPTER_FILE
    for path in (structure_path, tensors_path):
        if not path.exists():
            raise CheckpointError(f"{path}: missing from the checkpoint")
    saved = load_json(structure_path)
    if saved.get("method") != method_name:
        raise CheckpointError(f"{structure_path}: checkpoint of method {saved.get('method')!r}, not {method_name!r}")
    method.restore_structure(saved.get("structure", {}))
    try:
        state = load_file(str(tensors_path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{tensors_path}: unreadable safetensors file ({err})") from err
    method.load_adapter_state(state, source=str(tensors_path))


def restore_method(method_name: str, config: Config, lm: MotionLM, checkpoint: Path) -> ContinualMethod:
    """The trained method `method_name` around `lm` (its adapters injected into `lm.model`), in eval mode."""
    method = method_class(method_name)(config, lm)
    method.setup()
    load_checkpoint(method, checkpoint, method_name)
    method.eval()
    return method
