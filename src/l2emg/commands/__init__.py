"""The command line's sub-commands (`l2emg <command>`), one module each; `l2emg.cli` registers them."""

from pathlib import Path

# The names of the registry `l2emg.continual.methods.METHODS`, in its order. Spelled out so that
# `--help` does not import the methods (and torch with them); tests/test_help.py checks that this
# tuple is exactly the registry's keys, so a new method's `register_method` line comes with its name here.
METHOD_NAMES = (
    "mtl",
    "seqlora",
    "esmoe",
    "esmoe_wo_cged",
    "esmoe_wo_samoe",
    "esmoe_wo_lemo",
    "lwf",
    "olora",
    "sapt",
    "epi",
    "progprompt",
)
METHOD_LIST = ", ".join(METHOD_NAMES)

# The profiles: the YAML files of `l2emg/configs/` (`l2emg.config.PROFILE_DIR`, whose
# `available_profiles()` lists the same files; read here without importing the config module).
PROFILE_NAMES = tuple(sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml")))
PROFILE_HELP = f"config profile ({', '.join(PROFILE_NAMES)}) or a YAML file"
