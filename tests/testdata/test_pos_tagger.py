"""The batch tagger gives exactly NLTK's tags (the model the tagger rule provisions)."""

import random
import string

import pytest

from vgsalign.resources.tagger import provision_tagger, use_tagger
from vgsalign.testdata.pos_tagger import MODEL_DIR, BatchPerceptronTagger, normalize


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    nltk_data = tmp_path_factory.mktemp("nltk_data")
    provision_tagger("auto", nltk_data)
    use_tagger(nltk_data)
    from nltk.tag.perceptron import PerceptronTagger

    return BatchPerceptronTagger.from_folder(nltk_data / MODEL_DIR), PerceptronTagger()


def nltk_tags(nltk_tagger, sentences):
    return [[tag for _, tag in nltk_tagger.tag(sentence)] for sentence in sentences]


@pytest.mark.parametrize("unknown_share", [0.0, 0.6, 1.0])
def test_random_sentences_get_nltks_tags(taggers, unknown_share):
    """Words from the tag dictionary and made-up words (which go through the features and
    the scores), numbers, years and hyphenated words, in sentences of 1 to 14 words."""
    batch, nltk_tagger = taggers
    rng = random.Random(int(unknown_share * 10))
    known = sorted(nltk_tagger.tagdict)[::20]
    unknown = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 9))) for _ in range(500)]
    unknown += ["12", "2020", "3-d", "a-b", "x1", "-ish", "dogs", "running", "teddy"]
    sentences = [[rng.choice(unknown if rng.random() < unknown_share else known) for _ in range(rng.randint(1, 14))]
                 for _ in range(1500)]
    assert batch.tag_sentences(sentences) == nltk_tags(nltk_tagger, sentences)


def test_caption_like_sentences_and_edge_cases(taggers):
    batch, nltk_tagger = taggers
    sentences = [["a", "man", "riding", "a", "wave", "on", "top", "of", "a", "surfboard"],
                 ["two", "giraffes", "standing", "next", "to", "each", "other"], [], ["zebra"],
                 ["the", "the", "the"], ["a", "blurry", "photo", "of", "1984", "red-and-white", "buses"]]
    assert batch.tag_sentences(sentences) == nltk_tags(nltk_tagger, sentences)


def test_normalize_is_nltks(taggers):
    _, nltk_tagger = taggers
    for word in ["re-entry", "-x", "1999", "42", "4x4", "Dog", "dog", "12345"]:
        assert normalize(word) == nltk_tagger.normalize(word)
