"""The on-disk motion dataset format (HumanML3D layout) and its loader.

A dataset folder looks like HumanML3D, so the same loader reads the embedded benchmark, HumanML3D
itself and HumanML3D-style emotional datasets (EmotionalT2M, converted Motion-X):

    new_joints/ID.npy        (T, 22, 3) float32 joint positions, canonical frame (HumanML3D's)
    new_joint_vecs/ID.npy    (T-1, 263) float32 HumanML3D features (raw, not normalised)
    texts/ID.txt             one caption per line: `caption#word/POS word/POS ...#start#end`
    Mean.npy, Std.npy        (263,) feature statistics (HumanML3D-style, from the train split)
    train.txt val.txt test.txt all.txt   motion ids, one per line; every motion in ONE split
    labels.json              {id: {emotion, scenario, action, intensity}}   (optional for foreign data)
    dataset.json             metadata (name, fps, counts, generator seed/config, holdout pairs, ...)

`num_frames` of a record is T, the joint frame count; its feature array has T-1 rows.

`dataset.json` is written last by `write_index`, so a folder whose build was interrupted never
looks finished. Arrays are loaded lazily (on first use, then kept in a byte-bounded LRU cache), so a
29k-motion HumanML3D folder opens in seconds.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from l2emg.data.labels import EMOTIONS, SCENARIOS
from l2emg.errors import DataError
from l2emg.utils.io import atomic_write_bytes, atomic_write_text, load_npy, save_json, save_npy

FORMAT_VERSION = 1
FPS = 20
NUM_JOINTS = 22
FEATURE_DIM = 263
SPLITS: tuple[str, ...] = ("train", "val", "test")

JOINTS_DIR = "new_joints"
FEATURES_DIR = "new_joint_vecs"
TEXTS_DIR = "texts"
LABELS_FILE = "labels.json"
META_FILE = "dataset.json"
MEAN_FILE = "Mean.npy"
STD_FILE = "Std.npy"

# HumanML3D's loaders keep motions of 40..196 frames (and crop to multiples of 4 for the VQ-VAE).
HUMANML3D_MIN_FRAMES = 40
HUMANML3D_MAX_FRAMES = 196


# --------------------------------------------------------------------------------------------------
# Part-of-speech tagging of captions (HumanML3D's `word/POS` tokens)
# --------------------------------------------------------------------------------------------------
# HumanML3D tags captions with spaCy (universal POS tags) and writes `lemma/POS` for nouns and verbs
# (except "left") and `word/POS` otherwise, dropping punctuation and numbers written as digits.
# The T2M evaluator's text encoder reads these tokens. We cannot ship spaCy, so this is a small
# lexicon plus suffix rules tuned for motion descriptions: good enough for the word/POS one-hot
# features, not a general-purpose tagger.

_CLOSED_CLASS: dict[str, str] = {}
for _tag, _words in {
    "DET": "a an the this that these those his her their its my your our some each every both another "
           "any all no either neither",
    "PRON": "he she it they him them himself herself itself themselves someone something somebody anyone "
            "anything everything everyone nothing nobody who whom whose i me you we us one",
    "ADP": "with in on at from into onto over under across around through toward towards along behind "
           "above below beneath beside besides between of for by about like against during without within "
           "upon near past via throughout",
    "CCONJ": "and or but nor yet",
    "SCONJ": "while as if because until though although whilst since whether so",
    "AUX": "is are was were be been being am has have had does do did can could will would may might "
           "should must shall",
    "PART": "not to",
    "ADV": "then again back forward forwards backward backwards away up down out off together very also "
           "still just once twice here there sideways slightly almost quite too rather really only even "
           "before after now afterwards around first later soon ahead aside apart upward upwards downward "
           "downwards inward outward overhead instead somewhat much more most less least when where how "
           "why repeatedly",
    "NUM": "zero two three four five six seven eight nine ten eleven twelve twenty hundred",
    "INTJ": "oh wow hey hello yes",
}.items():
    for _w in _words.split():
        _CLOSED_CLASS[_w] = _tag

_ADJECTIVES = set(
    "left right happy sad angry fearful surprised disgusted neutral heavy big small large high low slow fast "
    "quick calm excited nervous scared afraid anxious joyful cheerful gloomy furious tense relaxed tired "
    "weary energetic lively lonely friendly ugly silly jolly wide narrow long short tall little full empty "
    "straight sharp soft hard gentle rough loud quiet proud shy bold brave timid upset glad content "
    "miserable depressed frightened terrified startled shocked amazed astonished stunned disgusted grossed "
    "repulsed annoyed irritated mad hostile aggressive elated ecstatic delighted glum sullen sorrowful "
    "heartbroken open closed other same different whole half entire several many few own new old good bad "
    "great strong weak stiff loose smooth steady unsteady graceful clumsy careful careless rapid brisk "
    "sluggish light dark front rear upper lower inner outer middle final next last circular forward-facing "
    "hesitant cautious wary jittery shaky restless frantic agitated dejected downcast listless playful "
    "eager enthusiastic confident triumphant vigorous firm limp uneasy alarmed panicked horrified revolted "
    "sickened appalled fiery stern grim somber sombre serene peaceful casual normal ordinary usual regular "
    "dramatic expressive exaggerated subtle deep shallow".split()
)

# Base forms of verbs common in motion descriptions; their inflections are generated below.
_VERB_BASES = (
    "walk run jog jump hop skip dance spin turn twirl kick punch throw catch swing wave clap bow sit stand "
    "stoop crouch squat kneel lie crawl climb stretch bend lean lift raise lower reach pick put place push "
    "pull carry hold grab drop shake nod point look step stumble stagger stomp march shuffle sway rock "
    "bounce roll flip cartwheel tumble somersault balance play strum drum pluck hit strike swim ride fight "
    "block dodge duck shoot dribble pass serve bat swat slash stab cast juggle perform act mime gesture "
    "move go come return stop start begin continue repeat pace wander rush hurry dash sprint trudge drag "
    "slump droop cower flinch recoil tremble shiver cheer celebrate leap glide slide tiptoe tap stamp sing "
    "conduct bang press type wipe clean cook eat drink brush comb open close talk laugh cry scream shout "
    "yell sigh groan scowl frown smile grimace hug greet salute fall land take make keep let get give show "
    "try use seem appear feel express display flail shrug cross fold rub scratch touch tilt rotate twist "
    "circle warm exercise train practice pose lunge jab hook tackle skate ski surf hike row paddle pedal "
    "flex yawn wake sleep rest wait watch search hide escape flee chase attack defend aim reload taunt "
    "sneak creep strut prance gallop waddle wobble bob glance peek peer retreat advance approach enter exit "
    "leave arrive bring lead hang stride skid pivot spring vault swirl sweep pound slap grip grasp toss "
    "bowl pitch volley spike kneel wiggle shimmy hum beat tip pat prod poke bump dip twitch jerk hunch "
    "huddle stiffen relax brace"
).split()

_IRREGULAR_VERBS = {
    "ran": "run", "went": "go", "gone": "go", "came": "come", "fell": "fall", "fallen": "fall",
    "sat": "sit", "stood": "stand", "threw": "throw", "thrown": "throw", "caught": "catch",
    "swung": "swing", "knelt": "kneel", "lay": "lie", "lain": "lie", "lying": "lie", "took": "take",
    "taken": "take", "made": "make", "held": "hold", "struck": "strike", "leapt": "leap",
    "shook": "shake", "shaken": "shake", "spun": "spin", "rode": "ride", "ridden": "ride",
    "swam": "swim", "fought": "fight", "shot": "shoot", "began": "begin", "begun": "begin",
    "kept": "keep", "got": "get", "gotten": "get", "gave": "give", "given": "give",
    "brought": "bring", "bent": "bend", "felt": "feel", "sang": "sing", "sung": "sing", "led": "lead",
    "slid": "slide", "hid": "hide", "hidden": "hide", "hung": "hang", "strode": "stride",
    "sprang": "spring", "swept": "sweep", "crept": "creep", "beaten": "beat", "woke": "wake",
    "slept": "sleep", "drank": "drink", "ate": "eat", "eaten": "eat", "showed": "show", "shown": "show",
    "fled": "flee",
}

_IRREGULAR_NOUNS = {
    "feet": "foot", "people": "person", "men": "man", "women": "woman", "children": "child",
    "teeth": "tooth", "knives": "knife", "selves": "self", "mice": "mouse", "geese": "goose",
}

_VOWELS = set("aeiou")


def _doubles_final_consonant(base: str) -> bool:
    """Short consonant-vowel-consonant verbs double the final letter: run -> running, step -> stepped."""
    if len(base) < 3 or base[-1] in _VOWELS or base[-1] in "wxy":
        return False
    vowel_groups = re.findall(r"[aeiou]+", base)
    return len(vowel_groups) == 1 and len(vowel_groups[0]) == 1 and base[-2] in _VOWELS \
        and base[-3] not in _VOWELS and len(base) <= 5


def _verb_forms(base: str) -> list[str]:
    """Third person, present participle and past form of a regular verb."""
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("ie"):
        ing = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        ing = base[:-1] + "ing"
    elif _doubles_final_consonant(base):
        ing = base + base[-1] + "ing"
    else:
        ing = base + "ing"
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        past = base[:-1] + "ied"
    elif _doubles_final_consonant(base):
        past = base + base[-1] + "ed"
    else:
        past = base + "ed"
    return [third, ing, past]


_VERB_LEMMA: dict[str, str] = {}
for _base in _VERB_BASES:
    _VERB_LEMMA[_base] = _base
    for _form in _verb_forms(_base):
        _VERB_LEMMA.setdefault(_form, _base)
_VERB_LEMMA.update(_IRREGULAR_VERBS)

_ADV_NOT_LY = {"ugly", "lonely", "friendly", "lively", "jolly", "silly", "holy", "early", "family",
               "belly", "fly", "reply", "rely", "apply", "ally", "bully", "only", "curly", "wobbly"}


def _noun_lemma(word: str) -> str:
    if word in _IRREGULAR_NOUNS:
        return _IRREGULAR_NOUNS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]
    return word


def _unknown_verb_lemma(word: str) -> str:
    """Rough lemma of a verb form that is not in the lexicon."""
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]
            return stem
    return word


def _tag_word(word: str, prev_tag: str | None, next_word: str | None) -> str:
    if word == "to":
        return "PART" if next_word in _VERB_LEMMA and _VERB_LEMMA[next_word] == next_word else "ADP"
    if word in _CLOSED_CLASS:
        return _CLOSED_CLASS[word]
    if word in _ADJECTIVES:
        return "ADJ"
    if word in _VERB_LEMMA:
        # After a determiner/adjective, a verb-like word is a noun ("a kick", "a big jump").
        if prev_tag in ("DET", "ADJ", "NUM") and not word.endswith(("ing", "ed")):
            return "NOUN"
        return "VERB"
    if word.endswith("ly") and word not in _ADV_NOT_LY and len(word) > 4:
        return "ADV"
    if word.endswith(("ful", "ous", "ive", "able", "ible", "less", "ish", "ic", "al")) and len(word) > 5:
        return "ADJ"
    if word.endswith("ing") and len(word) > 5:
        return "VERB"
    if word.endswith("ed") and len(word) > 4:
        return "ADJ" if prev_tag in ("AUX", "ADV") else "VERB"
    return "NOUN"


def tag_caption(text: str) -> tuple[str, ...]:
    """HumanML3D-style `word/POS` tokens of a caption.

    Lower-cases, drops hyphens and punctuation, tags each word with a universal POS tag (NOUN VERB
    ADJ ADV DET ADP PRON AUX CCONJ SCONJ PART NUM INTJ) and lemmatises nouns and verbs except "left",
    as HumanML3D's spaCy pipeline does. E.g. "A man kicks with his left leg." ->
    ('a/DET', 'man/NOUN', 'kick/VERB', 'with/ADP', 'his/DET', 'left/ADJ', 'leg/NOUN').
    """
    words = re.findall(r"[a-z]+", text.lower().replace("-", ""))
    tokens: list[str] = []
    prev_tag: str | None = None
    for i, word in enumerate(words):
        tag = _tag_word(word, prev_tag, words[i + 1] if i + 1 < len(words) else None)
        lemma = word
        if word != "left":
            if tag == "VERB":
                lemma = _VERB_LEMMA.get(word) or _unknown_verb_lemma(word)
            elif tag == "NOUN":
                lemma = _noun_lemma(word)
        tokens.append(f"{lemma}/{tag}")
        prev_tag = tag
    return tuple(tokens)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    """One text description of a motion; `start`/`end` (seconds) mark a sub-span, 0/0 = whole motion."""

    text: str
    tokens: tuple[str, ...]
    start: float = 0.0
    end: float = 0.0

    def to_line(self) -> str:
        text = " ".join(self.text.replace("#", " ").split())
        tokens = self.tokens or tag_caption(text)
        return f"{text}#{' '.join(tokens)}#{self.start:.1f}#{self.end:.1f}"

    @classmethod
    def from_line(cls, line: str) -> "Caption":
        """Parse `caption#tokens#start#end`; raises ValueError when the line is malformed."""
        parts = line.rstrip("\n").split("#")
        if len(parts) < 4:
            raise ValueError(f"expected 'caption#tokens#start#end', got {len(parts)} field(s)")
        text = "#".join(parts[:-3]).strip()
        if not text:
            raise ValueError("empty caption text")
        tokens = tuple(parts[-3].split())
        for token in tokens:
            word, sep, pos = token.rpartition("/")
            if not sep or not word or not pos:
                raise ValueError(f"token {token!r} is not 'word/POS'")
        try:
            start, end = float(parts[-2]), float(parts[-1])
        except ValueError:
            raise ValueError(f"start/end {parts[-2]!r}/{parts[-1]!r} are not numbers") from None
        # HumanML3D writes 'nan' for captions that cover the whole motion.
        start = 0.0 if math.isnan(start) else start
        end = 0.0 if math.isnan(end) else end
        return cls(text=text, tokens=tokens, start=start, end=end)

    @classmethod
    def from_text(cls, text: str) -> "Caption":
        """A whole-motion caption, tagged with `tag_caption`."""
        return cls(text=" ".join(text.split()), tokens=tag_caption(text))


@dataclass
class MotionRecord:
    """Everything about one motion except its arrays (see `MotionDataset.features/joints`)."""

    motion_id: str
    split: str
    captions: list[Caption]
    num_frames: int  # T joint frames; the feature array has T-1 rows
    emotion: str | None
    scenario: str | None
    action: str | None = None
    intensity: float | None = None

    def labels(self) -> dict[str, Any]:
        return {"emotion": self.emotion, "scenario": self.scenario, "action": self.action,
                "intensity": self.intensity}


# --------------------------------------------------------------------------------------------------
# Label maps: foreign emotion/scenario names -> ours
# --------------------------------------------------------------------------------------------------


@dataclass
class LabelMap:
    """Maps a dataset's emotion/scenario names onto EMOTIONS/SCENARIOS (case-insensitive).

    Built from `{"emotion": {...}, "scenario": {...}}` or from one flat `{foreign: ours}` dict in
    which each target says by itself whether it is an emotion or a scenario. A value of null maps the
    label to None (unlabelled). Names already in our label sets pass through unchanged.
    """

    emotion: dict[str, str | None] = field(default_factory=dict)
    scenario: dict[str, str | None] = field(default_factory=dict)
    source: str = "(none)"

    @classmethod
    def from_any(cls, spec: "LabelMap | Mapping[str, Any] | str | Path | None") -> "LabelMap":
        if spec is None:
            return cls()
        if isinstance(spec, LabelMap):
            return spec
        source = "(dict)"
        if isinstance(spec, (str, Path)):
            path = Path(spec)
            source = str(path)
            if not path.exists():
                raise DataError(f"{path}: label map file not found")
            try:
                text = path.read_text(encoding="utf-8")
                spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError) as err:
                raise DataError(f"{path}: label map is not valid JSON/YAML ({err})") from err
        if not isinstance(spec, Mapping):
            raise DataError(f"{source}: label map must be a mapping of names")
        out = cls(source=source)
        sections = {k: v for k, v in spec.items() if k in ("emotion", "scenario")}
        if sections and all(isinstance(v, Mapping) for v in sections.values()):
            extra = sorted(set(spec) - set(sections))
            if extra:
                raise DataError(f"{source}: label map may only have 'emotion' and 'scenario' sections, got {extra}")
            for kind, known in (("emotion", EMOTIONS), ("scenario", SCENARIOS)):
                for foreign, ours in dict(sections.get(kind) or {}).items():
                    target = None if ours is None else _canonical(ours, known)
                    if ours is not None and target is None:
                        raise DataError(f"{source}: label map sends {kind} {foreign!r} to {ours!r}, which is not "
                                        f"a known {kind} ({', '.join(known)})")
                    getattr(out, kind)[str(foreign).strip().lower()] = target
            return out
        # A flat map: each target says by itself whether it is an emotion or a scenario.
        for foreign, ours in spec.items():
            key = str(foreign).strip().lower()
            if ours is None:
                out.emotion[key] = out.scenario[key] = None
            elif _canonical(ours, EMOTIONS) is not None:
                out.emotion[key] = _canonical(ours, EMOTIONS)
            elif _canonical(ours, SCENARIOS) is not None:
                out.scenario[key] = _canonical(ours, SCENARIOS)
            else:
                raise DataError(f"{source}: label map sends {foreign!r} to {ours!r}, which is neither an emotion "
                                f"({', '.join(EMOTIONS)}) nor a scenario ({', '.join(SCENARIOS)})")
        return out

    def map(self, kind: str, value: Any) -> tuple[str | None, bool]:
        """(our label or None, ok). ok is False when the value is not a known label after mapping."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, True
        table = self.emotion if kind == "emotion" else self.scenario
        known = EMOTIONS if kind == "emotion" else SCENARIOS
        key = str(value).strip().lower()
        if key in table:
            return table[key], True
        canonical = _canonical(str(value), known)
        return (canonical, True) if canonical is not None else (str(value), False)


def _canonical(name: Any, known: Sequence[str]) -> str | None:
    key = str(name).strip().lower().replace("_", " ")
    for label in known:
        if label.lower() == key:
            return label
    return None


# --------------------------------------------------------------------------------------------------
# Reading helpers
# --------------------------------------------------------------------------------------------------


def read_split_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_captions(path: Path) -> list[Caption]:
    """All captions of `texts/ID.txt`; DataError naming the file and line when one is malformed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: caption file missing") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: caption file is not UTF-8 text ({err})") from err
    captions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            captions.append(Caption.from_line(line))
        except ValueError as err:
            raise DataError(f"{path}:{number}: malformed caption line ({err})") from None
    if not captions:
        raise DataError(f"{path}: caption file has no captions")
    return captions


_SHAPE_RE = re.compile(rb"['\"]shape['\"]\s*:\s*\(([^)]*)\)")


def npy_shape(path: str | Path) -> tuple[int, ...]:
    """Shape of a .npy array from its header only (no data read); ValueError when it is not a .npy."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise ValueError("not a .npy file (bad magic)")
        if head[6] == 1:
            length, start = int.from_bytes(head[8:10], "little"), 10
        else:
            length, start = int.from_bytes(head[8:12], "little"), 12
        header = head[start:] + f.read(length - (len(head) - start))
    match = _SHAPE_RE.search(header)
    if match is None:
        raise ValueError("no shape in the .npy header")
    return tuple(int(x) for x in match.group(1).replace(b" ", b"").split(b",") if x)


def length_ok(num_frames: int, min_frames: int = HUMANML3D_MIN_FRAMES,
              max_frames: int = HUMANML3D_MAX_FRAMES) -> bool:
    """HumanML3D's length filter: keep motions of min_frames..max_frames joint frames."""
    return min_frames <= num_frames <= max_frames


def filter_by_length(records: Iterable[MotionRecord], min_frames: int = HUMANML3D_MIN_FRAMES,
                     max_frames: int = HUMANML3D_MAX_FRAMES) -> list[MotionRecord]:
    """The records a HumanML3D loader would keep (nothing is cropped on load; this is opt-in)."""
    return [r for r in records if length_ok(r.num_frames, min_frames, max_frames)]


def caption_segment(features: np.ndarray, caption: Caption, fps: int = FPS) -> np.ndarray:
    """The frames a caption describes: all of them for start=end=0, else [start*fps, end*fps)."""
    if caption.start == 0.0 and caption.end == 0.0:
        return features
    return features[int(caption.start * fps): int(caption.end * fps)]


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------


class MotionDataset:
    """A HumanML3D-layout dataset: records in memory, arrays read on demand and cached.

    `mean`/`std` (263,) float32 are the feature statistics the dataset ships (or, when Mean.npy /
    Std.npy are missing, computed from its train split; `stats_note` says which).
    """

    def __init__(self, root: Path, records: list[MotionRecord], mean: np.ndarray, std: np.ndarray,
                 metadata: dict[str, Any] | None = None, stats_note: str = "Mean.npy/Std.npy",
                 cache_bytes: int = 1 << 30):
        self.root = Path(root)
        self.records = sorted(records, key=lambda r: r.motion_id)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.metadata = dict(metadata or {})
        self.stats_note = stats_note
        self._index = {r.motion_id: r for r in self.records}
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.root.name))

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, motion_id: str) -> bool:
        return motion_id in self._index

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.split(s))}" for s in SPLITS)
        return f"MotionDataset({str(self.root)!r}, {len(self)} motions: {counts})"

    def by_id(self, motion_id: str) -> MotionRecord:
        try:
            return self._index[motion_id]
        except KeyError:
            raise KeyError(f"{self.root}: no motion {motion_id!r}") from None

    def split(self, name: str) -> list[MotionRecord]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return [r for r in self.records if r.split == name]

    def ids(self, split: str | None = None) -> list[str]:
        records = self.records if split is None else self.split(split)
        return [r.motion_id for r in records]

    def features(self, motion_id: str) -> np.ndarray:
        """(T-1, 263) float32 raw features (read-only view of the cached array)."""
        record = self.by_id(motion_id)
        array = self._load(FEATURES_DIR, motion_id)
        if array.ndim != 2 or array.shape[1] != FEATURE_DIM:
            raise DataError(f"{self.root / FEATURES_DIR / (motion_id + '.npy')}: expected (T-1, {FEATURE_DIM}) "
                            f"features, got shape {array.shape}")
        if array.shape[0] != record.num_frames - 1:
            raise DataError(f"{self.root / FEATURES_DIR / (motion_id + '.npy')}: {array.shape[0]} feature rows "
                            f"but the motion has {record.num_frames} frames (expected T-1)")
        return array

    def joints(self, motion_id: str) -> np.ndarray:
        """(T, 22, 3) float32 joint positions (read-only view of the cached array)."""
        self.by_id(motion_id)
        array = self._load(JOINTS_DIR, motion_id)
        if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
            raise DataError(f"{self.root / JOINTS_DIR / (motion_id + '.npy')}: expected (T, {NUM_JOINTS}, 3) "
                            f"joints, got shape {array.shape}")
        return array

    def normalized_features(self, motion_id: str) -> np.ndarray:
        return (self.features(motion_id) - self.mean) / self.std

    def filter_by_length(self, min_frames: int = HUMANML3D_MIN_FRAMES,
                         max_frames: int = HUMANML3D_MAX_FRAMES, split: str | None = None) -> list[MotionRecord]:
        return filter_by_length(self.records if split is None else self.split(split), min_frames, max_frames)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    def _load(self, folder: str, motion_id: str) -> np.ndarray:
        key = (folder, motion_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.root / folder / f"{motion_id}.npy"
        try:
            array = load_npy(path)
        except FileNotFoundError:
            raise DataError(f"{path}: file missing") from None
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err
        if not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        array.flags.writeable = False
        self._cache[key] = array
        self._cache_bytes += array.nbytes
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return array


def _frame_count(root: Path, motion_id: str) -> int:
    """T from new_joints/ID.npy's header, else from new_joint_vecs (rows + 1)."""
    base = str(root)
    joints_path = os.path.join(base, JOINTS_DIR, motion_id + ".npy")
    features_path = os.path.join(base, FEATURES_DIR, motion_id + ".npy")
    for path, extra in ((joints_path, 0), (features_path, 1)):
        try:
            shape = npy_shape(path)
        except FileNotFoundError:
            continue
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: unreadable .npy header ({err})") from err
        if not shape:
            raise DataError(f"{path}: expected an array with a frame axis, got a scalar")
        return int(shape[0]) + extra
    raise DataError(f"{features_path}: file missing (motion {motion_id!r} is listed in a split file)")


def _load_stats(root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    mean_path, std_path = root / MEAN_FILE, root / STD_FILE
    if not (mean_path.exists() and std_path.exists()):
        return None
    arrays = []
    for path in (mean_path, std_path):
        try:
            array = load_npy(path)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err
        if array.shape != (FEATURE_DIM,):
            raise DataError(f"{path}: expected shape ({FEATURE_DIM},), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: contains NaN or inf")
        arrays.append(array.astype(np.float32))
    if np.any(arrays[1] <= 0):
        raise DataError(f"{std_path}: {int(np.sum(arrays[1] <= 0))} entries are zero or negative")
    return arrays[0], arrays[1]


def _read_json_object(path: Path, expected: str) -> dict[str, Any]:
    """A JSON file that must hold an object; DataError naming the file otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected {expected}")
    return value


def load_dataset(root: str | Path, label_map: LabelMap | Mapping[str, Any] | str | Path | None = None,
                 cache_bytes: int = 1 << 30) -> MotionDataset:
    """Open a HumanML3D-layout dataset folder (ours, HumanML3D, EmotionalT2M-style, …).

    Reads split files, captions, labels (optional; `label_map` maps foreign names to ours) and the
    frame count of every motion; arrays are read later, on demand. When Mean.npy/Std.npy are missing
    they are computed from the train split (HumanML3D-style) and a warning says so.
    Raises DataError naming the file for anything missing or inconsistent.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    labels_map = LabelMap.from_any(label_map)
    metadata: dict[str, Any] = {}
    meta_path = root / META_FILE
    if meta_path.exists():
        metadata = _read_json_object(meta_path, "a JSON object")
        if metadata.get("feature_dim", FEATURE_DIM) != FEATURE_DIM:
            raise DataError(f"{meta_path}: feature_dim {metadata.get('feature_dim')} is not {FEATURE_DIM}")

    # One global split per motion.
    split_of: dict[str, str] = {}
    found_split_file = False
    for split in SPLITS:
        path = root / f"{split}.txt"
        if not path.exists():
            continue
        found_split_file = True
        for motion_id in read_split_file(path):
            if motion_id in split_of and split_of[motion_id] != split:
                raise DataError(f"{path}: motion {motion_id!r} is also in {split_of[motion_id]}.txt "
                                f"(each motion must be in exactly one split)")
            split_of[motion_id] = split
    if not found_split_file:
        raise DataError(f"{root}: no split files (train.txt / val.txt / test.txt)")

    labels: dict[str, Any] = {}
    labels_path = root / LABELS_FILE
    if labels_path.exists():
        labels = _read_json_object(labels_path, "{id: {emotion, scenario, ...}}")

    frames_index = metadata.get("num_frames") if isinstance(metadata.get("num_frames"), dict) else {}
    records = []
    for motion_id, split in split_of.items():
        entry = labels.get(motion_id) or {}
        if not isinstance(entry, dict):
            raise DataError(f"{labels_path}: entry for {motion_id!r} must be an object")
        emotion, ok_e = labels_map.map("emotion", entry.get("emotion"))
        scenario, ok_s = labels_map.map("scenario", entry.get("scenario"))
        if not ok_e:
            raise DataError(f"{labels_path}: motion {motion_id!r} has unknown emotion {emotion!r} "
                            f"(known: {', '.join(EMOTIONS)}; pass a label map to translate it)")
        if not ok_s:
            raise DataError(f"{labels_path}: motion {motion_id!r} has unknown scenario {scenario!r} "
                            f"(known: {', '.join(SCENARIOS)}; pass a label map to translate it)")
        intensity = entry.get("intensity")
        if intensity is not None and not isinstance(intensity, (int, float)):
            raise DataError(f"{labels_path}: motion {motion_id!r} intensity {intensity!r} is not a number")
        num_frames = frames_index.get(motion_id)
        if num_frames is None:
            num_frames = _frame_count(root, motion_id)
        records.append(MotionRecord(
            motion_id=motion_id, split=split, captions=read_captions(root / TEXTS_DIR / f"{motion_id}.txt"),
            num_frames=int(num_frames), emotion=emotion, scenario=scenario,
            action=entry.get("action"), intensity=None if intensity is None else float(intensity),
        ))

    stats = _load_stats(root)
    dataset = MotionDataset(root, records, np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32),
                            metadata, cache_bytes=cache_bytes)
    if stats is None:
        source = dataset.split("train") or dataset.records
        if not source:
            raise DataError(f"{root}: no motions listed in the split files")
        from l2emg.motion.features import compute_feature_stats

        mean, std = compute_feature_stats([dataset.features(r.motion_id) for r in source])
        dataset.mean, dataset.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        which = "train split" if dataset.split("train") else "all motions"
        dataset.stats_note = f"computed from the {which} ({len(source)} motions): Mean.npy/Std.npy missing"
        warnings.warn(f"{root}: Mean.npy/Std.npy missing; feature statistics computed from the {which}",
                      stacklevel=2)
    else:
        dataset.mean, dataset.std = stats
    return dataset


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _write_plain(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_motion(root: str | Path, record: MotionRecord, joints: np.ndarray | None,
                 features: np.ndarray, atomic: bool = True) -> None:
    """Write one motion's arrays and caption file.

    joints: (T, 22, 3) or None (features-only datasets); features: (T-1, 263).
    atomic=True writes each file through a synced temporary file. The builder passes False: it
    writes into a staging folder that is synced once and renamed as a whole, which is just as safe
    and avoids three fsyncs per motion.
    """
    root = Path(root)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise DataError(f"motion {record.motion_id!r}: features must be (T-1, {FEATURE_DIM}), got {features.shape}")
    if not record.captions:
        raise DataError(f"motion {record.motion_id!r}: no captions")
    files: list[tuple[Path, bytes]] = []
    if joints is not None:
        joints = np.asarray(joints, dtype=np.float32)
        if joints.shape != (features.shape[0] + 1, NUM_JOINTS, 3):
            raise DataError(f"motion {record.motion_id!r}: joints {joints.shape} do not match features "
                            f"{features.shape} (expected ({features.shape[0] + 1}, {NUM_JOINTS}, 3))")
        files.append((root / JOINTS_DIR / f"{record.motion_id}.npy", _npy_bytes(joints)))
    files.append((root / FEATURES_DIR / f"{record.motion_id}.npy", _npy_bytes(features)))
    text = "\n".join(c.to_line() for c in record.captions) + "\n"
    files.append((root / TEXTS_DIR / f"{record.motion_id}.txt", text.encode("utf-8")))
    for path, data in files:
        (atomic_write_bytes if atomic else _write_plain)(path, data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_index(root: str | Path, records: Sequence[MotionRecord], mean: np.ndarray, std: np.ndarray,
                metadata: Mapping[str, Any]) -> None:
    """Write split files, labels.json, Mean/Std and — last — dataset.json, which marks the folder done."""
    root = Path(root)
    records = sorted(records, key=lambda r: r.motion_id)
    for split in SPLITS:
        ids = [r.motion_id for r in records if r.split == split]
        atomic_write_text(root / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    bad = [r.motion_id for r in records if r.split not in SPLITS]
    if bad:
        raise DataError(f"{root}: motions with no valid split: {bad[:5]}")
    atomic_write_text(root / "all.txt", "".join(f"{r.motion_id}\n" for r in records))
    save_json(root / LABELS_FILE, {r.motion_id: r.labels() for r in records})
    save_npy(root / MEAN_FILE, np.asarray(mean, dtype=np.float32))
    save_npy(root / STD_FILE, np.asarray(std, dtype=np.float32))
    meta = {
        "format_version": FORMAT_VERSION, "fps": FPS, "feature_dim": FEATURE_DIM, "num_joints": NUM_JOINTS,
        "num_motions": len(records),
        "splits": {s: sum(r.split == s for r in records) for s in SPLITS},
        **dict(metadata),
        "num_frames": {r.motion_id: int(r.num_frames) for r in records},
    }
    save_json(root / META_FILE, meta)


def write_dataset(root: str | Path, records: Sequence[MotionRecord], features: Mapping[str, np.ndarray],
                  mean: np.ndarray, std: np.ndarray, metadata: Mapping[str, Any] | None = None,
                  joints: Mapping[str, np.ndarray] | None = None, atomic: bool = True) -> None:
    """Write a whole dataset: every motion's files, then the index (dataset.json last, always atomic)."""
    for record in records:
        write_motion(root, record, None if joints is None else joints[record.motion_id],
                     features[record.motion_id], atomic=atomic)
    write_index(root, records, mean, std, metadata or {})
