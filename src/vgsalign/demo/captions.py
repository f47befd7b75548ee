"""Caption text for the demo corpus, with the truth of what every word refers to.

Captions are English sentences from templates with function words. They name the
image's objects by the category word, by synonyms and by plurals (puppy/dog,
automobile/car, people/person ...), and also name things that are drawn but not
annotated (the background: grass, sky, wall, table ...; clutter: box, rock).
Every word carries its role:
  object      names an annotated category of the image (category given)
  distractor  a noun of something visible but not annotated
  other       everything else (function words, verbs, adjectives, picture/photo ...)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# category -> noun phrases (singular, plural); each a tuple of words, all naming the object
NOUNS: dict[str, list[tuple[str, str]]] = {
    "person": [("person", "people"), ("man", "men"), ("woman", "women"), ("boy", "boys"), ("girl", "girls")],
    "car": [("car", "cars"), ("automobile", "automobiles"), ("vehicle", "vehicles")],
    "traffic light": [("traffic light", "traffic lights"), ("stoplight", "stoplights"), ("signal", "signals")],
    "stop sign": [("stop sign", "stop signs"), ("sign", "signs")],
    "cat": [("cat", "cats"), ("kitten", "kittens"), ("kitty", "kitties")],
    "dog": [("dog", "dogs"), ("puppy", "puppies"), ("pup", "pups")],
    "bottle": [("bottle", "bottles")],
    "cup": [("cup", "cups"), ("mug", "mugs")],
    "banana": [("banana", "bananas")],
    "apple": [("apple", "apples")],
    "pizza": [("pizza", "pizzas"), ("slice of pizza", "slices of pizza")],
    "teddy bear": [("teddy bear", "teddy bears"), ("teddy", "teddies"), ("toy bear", "toy bears")],
}
ADJECTIVES: dict[str, list[str]] = {
    "person": ["young", "tall", "smiling"],
    "car": ["blue", "small", "parked"],
    "traffic light": ["tall", "dark"],
    "stop sign": ["red", "small"],
    "cat": ["orange", "striped", "little"],
    "dog": ["brown", "spotted", "happy"],
    "bottle": ["green", "glass", "tall"],
    "cup": ["white", "small", "checkered"],
    "banana": ["yellow", "ripe"],
    "apple": ["red", "shiny", "fresh"],
    "pizza": ["cheesy", "hot"],
    "teddy bear": ["brown", "fluffy", "cute"],
}
# words of a noun phrase that are not the object's name ("of" in "slice of pizza")
NOT_NAMING = {"of"}
CROWD_WORDS = ["group", "bunch", "crowd", "pile"]

# background -> (noun phrases as word tuples, the word that is the noun, prepositions)
SCENES: dict[str, tuple[list[tuple[str, ...]], list[str]]] = {
    "grass": ([("the", "grass"), ("a", "green", "lawn"), ("the", "field")], ["on", "in"]),
    "sky": ([("the", "sky"), ("a", "blue", "sky"), ("the", "clouds")], ["under", "against"]),
    "wall": ([("a", "brick", "wall"), ("the", "wall")], ["in front of", "against"]),
    "floor": ([("the", "floor"), ("a", "tiled", "floor")], ["on"]),
    "sand": ([("the", "sand"), ("the", "beach")], ["on"]),
    "water": ([("the", "water"), ("a", "lake")], ["near", "by"]),
    "road": ([("the", "road"), ("the", "street")], ["on", "in"]),
    "table": ([("a", "wooden", "table"), ("the", "table")], ["on"]),
}
SCENE_NOUNS = {"grass", "lawn", "field", "sky", "clouds", "wall", "brick", "floor", "sand", "beach",
               "water", "lake", "road", "street", "table"}
CLUTTER_NOUNS = {"box": ["box", "boxes"], "rock": ["rock", "rocks"]}

VERBS_SINGULAR = [("is", "sitting"), ("is", "standing"), ("can", "be", "seen"), ("is", "resting")]
VERBS_PLURAL = [("are", "sitting"), ("are", "standing"), ("can", "be", "seen"), ("are", "resting")]


@dataclass
class Word:
    text: str                    # lower case, no punctuation
    role: str = "other"          # object | distractor | other
    category: str | None = None  # the COCO category an object word names
    noun: bool = False           # a noun in the template (for checking the tagger downstream)
    pause_after: bool = False    # a comma follows (spoken as a pause)


@dataclass
class Caption:
    words: list[Word]

    @property
    def text(self) -> str:
        """The written caption: capitalised, commas at pauses, a full stop at the end."""
        parts = []
        for w in self.words:
            parts.append(w.text + ("," if w.pause_after else ""))
        sentence = " ".join(parts)
        return sentence[:1].upper() + sentence[1:] + "."


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeio" else "a"


def _words(texts, role: str = "other") -> list[Word]:
    return [Word(t, role=role) for t in texts]


def object_phrase(rng: np.random.Generator, category: str, count: int, crowd: bool) -> tuple[list[Word], bool]:
    """Words naming `count` objects of `category`; returns (words, plural)."""
    options = NOUNS[category]
    # the category's own word half of the time, a synonym otherwise
    pick = 0 if (len(options) == 1 or rng.random() < 0.5) else int(rng.integers(1, len(options)))
    singular, plural_form = options[pick]
    plural = crowd or count > 1
    noun = (plural_form if plural else singular).split()
    noun_words = [Word(t, role="other" if t in NOT_NAMING else "object",
                       category=None if t in NOT_NAMING else category,
                       noun=t not in NOT_NAMING) for t in noun]
    adjective = []
    if rng.random() < 0.5:
        adjective = [Word(ADJECTIVES[category][int(rng.integers(len(ADJECTIVES[category])))])]
    head = (adjective + noun_words)[0].text
    if crowd:
        collective = CROWD_WORDS[int(rng.integers(len(CROWD_WORDS)))]
        lead = _words(["a", collective, "of"])
        lead[1].noun = True
    elif count == 1:
        lead = _words([_article(head) if rng.random() < 0.75 else "the"])
    elif count == 2:
        lead = _words(["two"])
    else:
        lead = _words([["three", "several", "some"][int(rng.integers(3))]])
    return lead + adjective + noun_words, plural


def scene_phrase(rng: np.random.Generator, background: str, with_preposition: bool = True) -> list[Word]:
    phrases, prepositions = SCENES[background]
    phrase = phrases[int(rng.integers(len(phrases)))]
    words = [Word(t, role="distractor", noun=True) if (t in SCENE_NOUNS and i == len(phrase) - 1) else Word(t)
             for i, t in enumerate(phrase)]
    if with_preposition:
        prep = prepositions[int(rng.integers(len(prepositions)))]
        words = _words(prep.split()) + words
    return words


def _verb(rng: np.random.Generator, plural: bool) -> list[Word]:
    verbs = VERBS_PLURAL if plural else VERBS_SINGULAR
    return _words(verbs[int(rng.integers(len(verbs)))])


def _clutter_phrase(rng: np.random.Generator, clutter: list[str]) -> list[Word]:
    kind = clutter[int(rng.integers(len(clutter)))]
    n = clutter.count(kind)
    noun = CLUTTER_NOUNS[kind][1 if n > 1 else 0]
    lead = "some" if n > 1 else _article(noun)
    return [Word(lead), Word(noun, role="distractor", noun=True)]


def make_caption(rng: np.random.Generator, objects: list[tuple[str, int, bool]], background: str,
                 clutter: list[str], long: bool) -> Caption:
    """One caption for a scene.

    objects: (category, instance count, crowd only) for each annotated category of the image;
    long: use a long template (more than 5 s of speech), so the frame cut is exercised.
    """
    order = [objects[i] for i in rng.permutation(len(objects))]
    phrases = [object_phrase(rng, cat, count, crowd) for cat, count, crowd in order]
    scene = scene_phrase(rng, background)

    if not phrases:
        choices = [
            lambda: _words(["a", "picture", "of"]) + scene_phrase(rng, background, False),
            lambda: _words(["an", "empty"]) + scene_phrase(rng, background, False)[1:] + _words(["with", "nothing", "on", "it"]),
            lambda: _words(["there", "is", "nothing", "here", "except"]) + scene_phrase(rng, background, False),
        ]
        words = choices[int(rng.integers(len(choices)))]()
        if clutter and rng.random() < 0.7:
            words += [Word("and")] + _clutter_phrase(rng, clutter)
        _mark_picture_nouns(words)
        return Caption(words)

    o1, plural1 = phrases[0]
    if long:
        rest = []
        for p, _ in phrases[1:3]:
            rest += [Word("and")] + p
        words = (_words(["this", "is", "a", "photograph", "of"]) + _pause(o1 + rest)
                 + _words(["placed", "together" if len(phrases) > 1 else "somewhere"]) + scene
                 + _words(["on", "a", "sunny", "afternoon"]))
        _mark_picture_nouns(words)
        return Caption(words)

    templates = [
        lambda: o1 + _verb(rng, plural1) + scene,
        lambda: _words(["we", "can", "see"]) + o1 + _words(["in", "this", "picture"]),
        lambda: _words(["a", "close", "up", "of"]) + o1 + scene,
    ]
    if len(phrases) >= 2:
        o2, _ = phrases[1]
        templates += [
            lambda: _words(["there", "are" if plural1 else "is"]) + o1 + _words(["and"]) + o2 + scene,
            lambda: _words(["a", "picture", "of"]) + o1 + _words(["next", "to"]) + o2,
            lambda: _pause(_words(["in", "this", "photo"])) + o1 + _verb(rng, plural1) + _words(["near"]) + o2,
            lambda: o1 + _words(["with"]) + o2 + _words(["in", "the", "background"]),
        ]
    if len(phrases) >= 3:
        o3, _ = phrases[2]
        templates += [lambda: o1 + _words(["and"]) + o2 + _words(["near"]) + o3]
    words = templates[int(rng.integers(len(templates)))]()
    if clutter and len(words) < 11 and rng.random() < 0.3:
        words += [Word("beside")] + _clutter_phrase(rng, clutter)
    _mark_picture_nouns(words)
    return Caption(words)


def _pause(words: list[Word]) -> list[Word]:
    words[-1].pause_after = True
    return words


def _mark_picture_nouns(words: list[Word]) -> None:
    # nouns that name no thing in the image (role stays "other")
    for w in words:
        if w.text in {"picture", "photo", "photograph", "background", "afternoon", "close"} and w.role == "other":
            w.noun = w.text != "close"
