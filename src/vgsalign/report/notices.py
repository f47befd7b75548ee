"""What a reader must know before trusting the report's numbers: warnings (they change how
the numbers read) and notes, each found in the result files of the run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .results import RejectCount, Results


@dataclass(frozen=True)
class Notice:
    level: str        # "warning" (changes how the numbers read) or "note"
    title: str
    detail: str = ""


def collect_notices(results: Results, *, n_examples: int, threshold: float, n_example_pairs: int) -> list[Notice]:
    """Every notice of the run: warnings first, then notes."""
    notices = (feature_notices(results.audio_attrs, results.visual_attrs) + rejects_notices(results.rejects)
               + score_notices(results) + retrieval_notices(results.retrieval, results.scores_summary))
    test_threshold = float(results.testdata_summary["threshold"])
    if not math.isclose(test_threshold, threshold, rel_tol=1e-9):
        notices.append(Notice("warning", f"The test set was built with match.threshold {test_threshold:g}, "
                                         f"the configuration says {threshold:g}", "Rerun the test set."))
    if n_example_pairs < n_examples:
        notices.append(Notice("note", f"Only {n_example_pairs} scored pair(s) for {n_examples} alignment "
                                      "examples (report.n_examples)"))
    return sorted(notices, key=lambda n: n.level != "warning")


def feature_notices(audio_attrs: list[tuple[Path, dict]], visual_attrs: list[tuple[Path, dict]]) -> list[Notice]:
    """Random image weights and silent captions (items left out: `rejects_notices`)."""
    notices = []
    random_shards = [path for path, attrs in visual_attrs if attrs.get("random_weights")]
    if random_shards:
        notices.append(Notice(
            "warning", "Image features come from a CNN with random weights",
            f"{len(random_shards)} of {len(visual_attrs)} visual feature shards record random_weights = True "
            f"(visual.allow_random_weights), e.g. {random_shards[0]}. The model never saw pretrained image "
            "features; its alignments say little about what the original model learns."))
    silent = sum(int(attrs.get("n_silent", 0) or 0) for _, attrs in audio_attrs)
    if silent:
        notices.append(Notice("note", f"{silent:,} silent caption(s) in the test split's audio shards",
                              "Their log-mel energies sit at the floor."))
    return notices


def rejects_notices(rejects: list[RejectCount]) -> list[Notice]:
    """Items the stages left out of the run (on_error: skip), counted per stage."""
    rejected = [r for r in rejects if r.count]
    if not rejected:
        return []
    per_stage: dict[str, int] = {}
    for r in rejected:
        per_stage[r.stage] = per_stage.get(r.stage, 0) + r.count
    total = sum(per_stage.values())
    stages = ", ".join(f"{stage} {n:,}" for stage, n in per_stage.items())
    detail = "; ".join(f"{r.source}: {r.count:,}" + (f" (e.g. {r.example})" if r.example else "") for r in rejected)
    return [Notice("warning", f"{total:,} item(s) of the corpus were rejected and left out ({stages})",
                   f"{detail}. The table of rejects per stage is under The test set.")]


def score_notices(results: Results) -> list[Notice]:
    """Excluded pairs (by reason), pairs without attention, foreign tensors, small categories."""
    notices = []
    counts = results.scores_summary["counts"]
    excluded = int(counts.get("pairs_excluded", 0))
    if excluded:
        reasons = counts.get("exclusion_reasons", {})
        detail = "; ".join(f"{reason}: {n:,} ({reasons.get(reason, '')})"
                           for reason, n in sorted(counts.get("excluded_by_reason", {}).items()))
        notices.append(Notice("warning", f"{excluded:,} of {int(counts['pairs_in_table']):,} test pairs were "
                                         "excluded from the scores",
                              f"{detail}. They are listed in scores/excluded_pairs.csv."))
    if len(results.excluded) != excluded:
        notices.append(Notice("warning", "scores/excluded_pairs.csv and scores/summary.json disagree",
                              f"{len(results.excluded):,} rows in the table, {excluded:,} in the summary."))
    zero = int(counts.get("pairs_with_zero_attention", 0))
    if zero:
        notices.append(Notice("warning", f"{zero:,} pair(s) with no attention at all during the word",
                              "They score 0 (possible only without softmax)."))
    inputs = results.scores_summary["inputs"]
    source = str(inputs.get("tensor_attrs", {}).get("source", "not recorded"))
    if inputs.get("tensor_format") != "h5" or "vgsalign tensors" not in source:
        notices.append(Notice("note", "The tensors were not dumped by this pipeline's tensors step",
                              f"Format {inputs.get('tensor_format')}, source {source!r}."))
    few = results.categories.loc[results.categories["n_pairs"] < 5, "category"].astype(str).tolist()
    if few:
        notices.append(Notice("note", f"{len(few)} categor{'y has' if len(few) == 1 else 'ies have'} fewer than "
                                      "5 pairs", "Their intervals are wide: " + ", ".join(few[:20]) + "."))
    return notices


def retrieval_notices(retrieval: dict, scores_summary: dict) -> list[Notice]:
    """Capped pools, subsampled validation, chance-level retrieval, another run's figures."""
    notices = []
    pooled = retrieval["pooled_r10"]
    if int(pooled.get("pool_size", 0)) < int(pooled.get("pool_size_requested", 0)):
        notices.append(Notice(
            "warning", f"Pooled R@10 uses pools of {int(pooled['pool_size']):,} images, "
                       f"not {int(pooled['pool_size_requested']):,} (train.pool_size)",
            f"The validation split has only {int(pooled['pool_size']):,} images; chance is "
            f"{pooled.get('chance', float('nan')):.3f}, so the figure is not comparable with the original's pools "
            "of 1000."))
    if int(retrieval.get("n_images", 0)) < int(retrieval.get("n_images_in_split", 0)):
        notices.append(Notice("note", f"Full-split retrieval over {int(retrieval['n_images']):,} of "
                                      f"{int(retrieval['n_images_in_split']):,} validation images "
                                      "(train.eval_max_images)"))
    chance = retrieval.get("chance", {})
    for key, name in (("image_retrieval_from_captions", "image retrieval from captions"),
                      ("caption_retrieval_from_images", "caption retrieval from images")):
        r10, level = retrieval[key].get("r10"), chance.get(key, {}).get("r10")
        if r10 is not None and level is not None and r10 <= level:
            notices.append(Notice("warning", f"The model does no better than chance at {name}",
                                  f"R@10 {r10:.3f}, chance {level:.3f}: its attention maps may not mean anything yet."))
    if scores_summary.get("retrieval") is None:
        notices.append(Notice("note", "The scores were computed without --retrieval",
                              "scores/summary.json holds no retrieval figures; train/retrieval.json is shown."))
    elif scores_summary["retrieval"] != retrieval:
        notices.append(Notice("warning", "scores/summary.json holds other retrieval figures than train/retrieval.json",
                              "The scores may come from another training run; rerun the scores."))
    return notices
