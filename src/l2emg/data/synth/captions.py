"""Caption grammar: several differently worded descriptions of one motion.

Every caption names the action (one of its paraphrases), the subject (generic or the scenario's own
noun, e.g. "the dancer") and the emotion in words: an adverbial ("sadly", "with a heavy heart",
"trembling with fear"), an adjective ("a very angry man"), a "who looks ..." clause or a
"feels ..." clause. Adjectives carry the intensity ("slightly", "very"). Captions are plain lowercase
English without punctuation.
"""

from __future__ import annotations

import numpy as np

from l2emg.labels import EMOTIONS

ADVERBIALS: dict[str, tuple[str, ...]] = {
    "neutral": ("calmly", "casually", "in a relaxed way", "with a neutral expression", "in an ordinary way",
                "without any particular emotion", "evenly"),
    "happy": ("happily", "joyfully", "cheerfully", "gleefully", "with a big smile", "in high spirits", "with joy"),
    "sad": ("sadly", "with a heavy heart", "dejectedly", "gloomily", "sorrowfully", "in low spirits", "mournfully"),
    "angry": ("angrily", "furiously", "in a rage", "aggressively", "full of anger", "irritably", "with fury"),
    "fearful": ("fearfully", "trembling with fear", "nervously", "anxiously", "timidly", "in fear",
                "with a frightened look"),
    "surprised": ("in surprise", "with a start", "in astonishment", "with amazement", "in shock",
                  "with sudden surprise"),
    "disgusted": ("with disgust", "in disgust", "with a look of revulsion", "with distaste",
                  "recoiling in disgust", "squeamishly"),
}

ADJECTIVES: dict[str, tuple[str, ...]] = {
    "neutral": ("calm", "relaxed", "composed", "unemotional", "expressionless"),
    "happy": ("happy", "joyful", "cheerful", "delighted", "glad"),
    "sad": ("sad", "unhappy", "dejected", "sorrowful", "downcast", "gloomy"),
    "angry": ("angry", "furious", "enraged", "irritated", "mad"),
    "fearful": ("scared", "afraid", "frightened", "fearful", "terrified", "nervous"),
    "surprised": ("surprised", "astonished", "amazed", "startled", "shocked"),
    "disgusted": ("disgusted", "revolted", "repulsed", "grossed out"),
}

GENERIC_SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure")
SCENARIO_SUBJECTS: dict[str, tuple[str, ...]] = {
    "Daily Life": ("a pedestrian", "a man", "a woman"),
    "Sports": ("an athlete", "the athlete", "a player"),
    "Dance": ("the dancer", "a dancer"),
    "Shows": ("the performer", "a performer", "an entertainer"),
    "Game": ("the game character", "a warrior", "the player character"),
    "Animation": ("a cartoon character", "the animated character"),
    "Instrument Play": ("a musician", "the musician", "a player"),
    "Acrobatics": ("an acrobat", "the gymnast", "a gymnast"),
}

# The words that mark each emotion in a caption (for checks and tests).
EMOTION_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    e: ADVERBIALS[e] + ADJECTIVES[e] for e in EMOTIONS
}

TEMPLATES = (
    "{subj} {vp} {adv}",
    "{adv} {subj} {vp}",
    "{subj} who looks {adj} {vp}",
    "{a_adj_noun} {vp}",
    "{subj} is {ving} {adv}",
    "{subj} feels {adj} and {vp}",
    "{a_adj_noun} is {ving}",
    "feeling {adj} {subj} {vp}",
    "{subj} {vp} looking {adj}",
)


def _degree(emotion: str, intensity: float, rng: np.random.Generator) -> str:
    if emotion == "neutral":
        return ""
    if intensity >= 0.85:
        return str(rng.choice(["very ", "extremely ", "deeply ", "really "])) if rng.uniform() < 0.7 else ""
    if intensity < 0.68:
        return str(rng.choice(["slightly ", "rather ", "somewhat "])) if rng.uniform() < 0.7 else ""
    return ""


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def make_captions(scenario: str, emotion: str, intensity: float, phrases, slots: dict[str, str],
                  count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct captions (count >= 1) for one motion.

    phrases: the action's (third person, -ing) paraphrases; slots fill {side}/{other}/{turn}.
    """
    subjects = GENERIC_SUBJECTS + SCENARIO_SUBJECTS.get(scenario, ())
    captions: list[str] = []
    attempts = 0
    while len(captions) < count and attempts < 200:
        attempts += 1
        vp, ving = phrases[int(rng.integers(len(phrases)))]
        vp, ving = vp.format(**slots), ving.format(**slots)
        subj = str(rng.choice(subjects))
        adj = _degree(emotion, intensity, rng) + str(rng.choice(ADJECTIVES[emotion]))
        noun = subj.split(" ", 1)[1] if " " in subj else "person"
        text = str(rng.choice(TEMPLATES)).format(
            subj=subj, vp=vp, ving=ving, adv=str(rng.choice(ADVERBIALS[emotion])), adj=adj,
            a_adj_noun=f"{_article(adj)} {adj} {noun}",
        )
        text = " ".join(text.split())
        if text not in captions:
            captions.append(text)
    if len(captions) < count:
        raise RuntimeError(f"could not word {count} distinct captions for {scenario}/{emotion}")
    return captions
