"""The label sets of the L²-EMG benchmark: eight motion scenarios and seven emotions."""

from __future__ import annotations

import re

# The paper's eight scenarios, in the paper's order (Table 1), which is also scenario order 1.
SCENARIOS: tuple[str, ...] = (
    "Daily Life", "Sports", "Dance", "Shows", "Game", "Animation", "Instrument Play", "Acrobatics",
)

# Ekman's six basic emotions plus neutral (docs/design.md, "Emotion labels").
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted")

# Motions per scenario in the paper's Unseen split (Table 1); the embedded generator keeps these
# proportions when it sizes each scenario.
PAPER_SCENARIO_COUNTS: dict[str, int] = {
    "Daily Life": 5407, "Sports": 2191, "Dance": 2068, "Shows": 1101, "Game": 1618,
    "Animation": 1719, "Instrument Play": 3903, "Acrobatics": 1909,
}


def scenario_slug(scenario: str) -> str:
    """'Instrument Play' -> 'instrument_play' (for file names; any other character becomes '_' too)."""
    return re.sub(r"[^a-z0-9]+", "_", scenario.lower()).strip("_") or "scenario"
