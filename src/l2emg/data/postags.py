"""Part-of-speech tagging of captions: HumanML3D's `word/POS` tokens (`tag_caption`).

HumanML3D tags captions with spaCy (universal POS tags) and writes `lemma/POS` for nouns and verbs
(except "left") and `word/POS` otherwise, dropping punctuation and numbers written as digits.
The T2M evaluator's text encoder reads these tokens. We cannot ship spaCy, so this is a small
lexicon plus suffix rules tuned for motion descriptions: good enough for the word/POS one-hot
features, not a general-purpose tagger.
"""

from __future__ import annotations

import re

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

