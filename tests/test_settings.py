"""The settings dataclasses of the stages take every value from their config slice: none
carries a default of its own (defaults live once, in the schema), and every field is a key
of the schema section the step reads it from."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from vgsalign.config import section_defaults
from vgsalign.errors import InputError
from vgsalign.scores.plan import ScoreSettings, score_settings
from vgsalign.settings import settings_from_dict

# (module, class, config section): the classes the steps build with settings_from_json/dict
SETTINGS_CLASSES = [
    ("vgsalign.demo.corpus", "DemoSettings", "demo"),
    ("vgsalign.resources.tagger", "ResourceSettings", "resources"),
    ("vgsalign.resources.vectors", "VectorSettings", "word_vectors"),
    ("vgsalign.testdata.dataset", "DatasetSettings", "dataset"),
    ("vgsalign.testdata.frames", "FrameSettings", "frames"),
    ("vgsalign.testdata.frames", "WordSpanSettings", "word_spans"),
    ("vgsalign.testdata.nouns", "NounSettings", "nouns"),
    ("vgsalign.testdata.vocab", "VocabSettings", "vocab"),
    ("vgsalign.testdata.pairs", "MatchSettings", "match"),
    ("vgsalign.features.logmel", "LogMelSettings", "audio"),
    ("vgsalign.features.logmel", "GridSettings", "frames"),
    ("vgsalign.features.plan", "ShardingSettings", "features"),
    ("vgsalign.features.visual", "VisualSettings", "visual"),
    ("vgsalign.train.models", "ModelSettings", "model"),
    ("vgsalign.train.loop", "TrainSettings", "train"),
    ("vgsalign.train.loop", "FrameSettings", "frames"),
    ("vgsalign.scores.plan", "ScoreSettings", "scores"),
    ("vgsalign.scores.plan", "FrameSettings", "frames"),
    ("vgsalign.report.page", "ReportSettings", "report"),
]


@pytest.mark.parametrize("module, name, section", SETTINGS_CLASSES, ids=[f"{m}.{c}" for m, c, _ in SETTINGS_CLASSES])
def test_settings_class_has_no_defaults_and_only_schema_keys(module, name, section):
    cls = getattr(importlib.import_module(module), name)
    fields = dataclasses.fields(cls)
    with_default = [f.name for f in fields
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == [], f"{name} carries its own defaults for {with_default}"
    assert {f.name for f in fields} <= set(section_defaults(section)), f"{name} has fields outside {section}"


def test_score_settings_fill_from_the_schema_and_refuse_unknown_keys():
    defaults = section_defaults("scores")
    settings = score_settings(bootstrap=defaults["bootstrap"] + 7)
    assert settings.bootstrap == defaults["bootstrap"] + 7
    assert settings.mode == defaults["mode"] and settings.grid == defaults["grid"]
    with pytest.raises(InputError, match="unknown setting"):
        score_settings(bootstrapp=3)
    with pytest.raises(InputError, match="missing setting"):
        settings_from_dict(ScoreSettings, {"mode": "exact"})   # no section: nothing is filled
