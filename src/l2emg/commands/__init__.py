"""The command line's sub-commands (`l2emg <command>`), one module each; `l2emg.cli` registers them."""

# The profiles of `l2emg/configs/` (tests/test_config.py checks this against `available_profiles()`;
# spelled out so that `--help` does not import the config module).
PROFILE_HELP = "config profile (tiny, default, smollm2, paper, gpu) or a YAML file"
