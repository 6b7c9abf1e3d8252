"""Continual-learning methods, by the name `l2emg train --method NAME` uses: the registry.

A method's identity is declared on its class (`ContinualMethod`): `name`, `label`, `paper_row` and
`options`. Everything else is derived from the registered classes: `METHODS` (name -> class, in the
order of `--help`, the bench and its tables), `METHOD_LABELS` (name -> label, re-exported by
`l2emg.continual.report`), `paper_table2()` (the paper's Table 2 by name) and the method sections of
`l2emg.config.Config` (`register_method` registers a method's options model there).

Adding a method:
1. one new file here with its class, declaring `name`, `label`, `paper_row` (None outside the paper)
   and `options` (None, or an `l2emg.config.MethodOptions` model);
2. one registry line below, `register_method(TheClass)` (plus its import);
3. its name in `l2emg.commands.METHOD_NAMES`, the CLI's torch-free copy of the registry's names
   (tests/test_help.py says so when it is missing);
4. if it has options: its model in `l2emg/config.py`, next to the other method sections and
   decorated `@register_method_options` (config.py lies below this package, and profiles and saved
   run configs must validate without importing the methods). A method registered at run time, from
   outside the package (tests/test_method_registry.py), may define its model anywhere:
   `register_method` adds the section then.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from l2emg.config import register_method_options, unregister_method_options
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.continual.methods.epi import EPI
from l2emg.continual.methods.esmoe import ESMoE, ESMoEWithoutCGED, ESMoEWithoutLemo, ESMoEWithoutSAMoE
from l2emg.continual.methods.lwf import LwFLoRA
from l2emg.continual.methods.mtl import MTL
from l2emg.continual.methods.olora import OLoRA
from l2emg.continual.methods.progprompt import ProgressivePrompts
from l2emg.continual.methods.sapt import SAPT
from l2emg.continual.methods.seqlora import SeqLoRA
from l2emg.errors import ConfigError
from l2emg.eval.paper_table2 import PAPER_ROWS, PAPER_TABLE2

_Method = TypeVar("_Method", bound=type[ContinualMethod])

METHODS: dict[str, type[ContinualMethod]] = {}


def register_method(cls: _Method) -> _Method:
    """Add `cls` to the registry under its `name`, and its options model as the Config section it
    names (`l2emg.config.register_method_options`; nothing changes when that model is already the
    section's). Refused (ValueError): a taken name or label, a paper row the paper lacks, and a name,
    label or paper_row the class inherits instead of declaring. Returns `cls`."""
    undeclared = [a for a in ("name", "label", "paper_row") if a not in vars(cls)]
    if undeclared:
        raise ValueError(f"{cls.__qualname__} must declare its own {', '.join(undeclared)} "
                         f"(a method's identity is not inherited)")
    if not cls.name or not cls.label:
        raise ValueError(f"{cls.__qualname__}: name and label must not be empty")
    if cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is taken by {METHODS[cls.name].__qualname__}")
    same_label = [name for name, known in METHODS.items() if known.label == cls.label]
    if same_label:
        raise ValueError(f"label {cls.label!r} of {cls.__qualname__} is taken by method {same_label[0]!r}")
    if cls.paper_row is not None and cls.paper_row not in PAPER_ROWS:
        raise ValueError(f"{cls.__qualname__}.paper_row {cls.paper_row!r}: the paper's rows are "
                         f"{', '.join(PAPER_ROWS)} (or None)")
    if cls.options is not None:
        register_method_options(cls.options)
    METHODS[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a method registered at run time (a test's), with its Config section when no other
    registered method reads it."""
    cls = METHODS.pop(name)
    if cls.options is not None and not any(m.options is cls.options for m in METHODS.values()):
        unregister_method_options(cls.options.section)


# The registry: one line per method, in the order of `--help`, the bench and its tables.
register_method(MTL)
register_method(SeqLoRA)
register_method(ESMoE)
register_method(ESMoEWithoutCGED)
register_method(ESMoEWithoutSAMoE)
register_method(ESMoEWithoutLemo)
register_method(LwFLoRA)
register_method(OLoRA)
register_method(SAPT)
register_method(EPI)
register_method(ProgressivePrompts)


def method_class(name: str) -> type[ContinualMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


class _Labels(Mapping[str, str]):
    """{registry name: label}, read from the registry at each use (a method registered later is in it)."""

    def __getitem__(self, name: str) -> str:
        return METHODS[name].label

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)

    def __repr__(self) -> str:
        return repr(dict(self))


METHOD_LABELS: Mapping[str, str] = _Labels()


def paper_table2() -> dict[str, dict[str, dict[str, float | None]]]:
    """The paper's Table 2 by registry name: [split][name] = the row the method declares
    (`paper_row`), for the registered methods that declare one, in registry order."""
    return {split: {name: rows[cls.paper_row] for name, cls in METHODS.items() if cls.paper_row in rows}
            for split, rows in PAPER_TABLE2.items()}


__all__ = ["ContinualMethod", "ScenarioContext", "METHODS", "METHOD_LABELS", "method_class", "paper_table2",
           "register_method", "unregister_method"]
