"""Errors meant for the user: each message names the file (and field) that is wrong."""


class L2EMGError(ValueError):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class ConfigError(L2EMGError):
    """A config file or override that cannot be used."""


class DataError(L2EMGError):
    """A dataset file that is missing, unreadable or inconsistent."""


class CheckpointError(L2EMGError):
    """A checkpoint that is missing, corrupt or from an incompatible config."""


class BusyError(L2EMGError):
    """A run folder (or method run) another process is writing."""
