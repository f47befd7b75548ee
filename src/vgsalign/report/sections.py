"""The report's sections as HTML: the notices (one line at the top, details further down),
the scores, the run at a glance, retrieval, the test set with its rejects, the tables per
category and the settings. Numbers are shown with `markup.number` (where they come from)
or `markup.derived_number` (what the page computed from which cell)."""

from __future__ import annotations

import pandas as pd

from ..scores.alignment import SCORE_NAMES
from .chance import chance_corrected, corrected_by_category
from .figures import SCORE_LABELS, SCORE_QUESTIONS
from .markup import derived_number, esc, format_number, number, table, yaml_block
from .notices import Notice
from .results import SOURCES, RejectCount, ReportInputs, Results

CORRECTED = "chance_corrected"   # data-derived name of (score - chance) / (1 - chance)


# ---------------------------------------------------------------- notices


def notice_line_html(notices: list[Notice]) -> str:
    """One line for the first screen: how many warnings and notes, their titles, each a
    link to its details in the Warnings section."""
    if not notices:
        return '<p class="notice-line clean" id="notice-line">No warnings: the run raised none.</p>'
    n_warnings = sum(n.level == "warning" for n in notices)
    counts = (f'<a class="count" href="#warnings">{n_warnings} warning{"s" if n_warnings != 1 else ""}, '
              f'{len(notices) - n_warnings} note{"s" if len(notices) - n_warnings != 1 else ""}</a>')
    titles = " · ".join(f'<a href="#notice-{k}">{esc(n.title)}</a>' for k, n in enumerate(notices, start=1))
    return f'<p class="notice-line" id="notice-line">{counts}: {titles}</p>'


def notices_html(notices: list[Notice]) -> str:
    """The details of every notice (the body of the Warnings section)."""
    if not notices:
        return "<p>The run raised no warning.</p>"
    items = "\n".join(f'<li class="level-{esc(n.level)}" id="notice-{k}"><strong>{esc(n.level.upper())}: '
                      f"{esc(n.title)}.</strong> {esc(n.detail)}</li>" for k, n in enumerate(notices, start=1))
    return f'<ul class="notices">\n{items}\n</ul>'


# ---------------------------------------------------------------- scores


def scores_intro(options: dict) -> str:
    text = (f"Mode {options['mode']}, softmax {options['softmax']}, "
            f"AS_word normalised by {options['as_word_normalization']}.")
    if options.get("softmax_as_family") and options.get("softmax_gs_family"):
        text += (" With the softmaxes in both families, GS_object equals AS_object and GS_word equals AS_word "
                 "(object normalisation) exactly; the four scores differ only on unnormalised tensors.")
    text += (" Chance-corrected: (score - chance) / (1 - chance), 0 at chance and 1 at the best score, so that "
             "big objects and long words do not pass for good alignment.")
    return f"<p>{esc(text)}</p>"


def overall_html(results: Results) -> str:
    overall, source = results.scores_summary["overall"], SOURCES["scores"]
    rows = []
    for s in SCORE_NAMES:
        def cell(key: str) -> str:
            return number(overall.get(key), source, ["overall", key])
        corrected = float(chance_corrected(overall[f"{s}_mean"], overall[f"chance_{s}_mean"]))
        rows.append([f"<strong>{esc(SCORE_LABELS[s])}</strong><br><small>{esc(SCORE_QUESTIONS[s])}</small>",
                     cell(f"{s}_mean"), cell(f"{s}_ci_low") + " – " + cell(f"{s}_ci_high"), cell(f"chance_{s}_mean"),
                     derived_number(corrected, CORRECTED, source, ["overall", s],
                                    css="below-chance" if corrected <= 0 else ""),
                     cell(f"random_{s}_mean"), cell(f"random_{s}_ci_low") + " – " + cell(f"random_{s}_ci_high")])
    counts = results.scores_summary["counts"]
    count_rows = [[esc(label), number(counts.get(key), source, ["counts", key], digits=None)] for key, label in (
        ("pairs_in_table", "pairs in the test set"), ("pairs_scored", "pairs scored"),
        ("pairs_excluded", "pairs excluded"), ("utterances_scored", "utterances"), ("images_scored", "images"),
        ("categories_scored", "categories"), ("pairs_with_zero_attention", "pairs with no attention during the word"))]
    for reason, n in sorted(counts.get("excluded_by_reason", {}).items()):
        count_rows.append([esc(f"excluded: {reason}"),
                           number(n, source, ["counts", "excluded_by_reason", reason], digits=None)])
    header = ["score", "model mean", "95% interval", "chance", "chance-corrected", "random tensor", "95% interval"]
    return (table(header, rows, "overall", caption="Mean over all scored pairs (bootstrap intervals resample "
                                                   "utterances)")
            + "<details><summary>Counts of pairs (scores/summary.json)</summary>"
            + table(["count", "value"], count_rows, "counts") + "</details>")


def categories_html(categories: pd.DataFrame) -> str:
    """category_scores.csv as it is, with the chance-corrected means the page computes."""
    source = SOURCES["categories"]
    columns = [("n_pairs", "pairs", None), ("n_utterances", "utterances", None),
               ("mean_mask_area_share", "mask area share", 3), ("mean_word_duration_s", "word duration (s)", 3)]
    columns += [(f"{s}_mean", SCORE_LABELS[s], 3) for s in SCORE_NAMES]
    columns += [(f"chance_{s}_mean", f"chance {SCORE_LABELS[s]}", 3) for s in SCORE_NAMES]
    columns += [(f"random_{s}_mean", f"random {SCORE_LABELS[s]}", 3) for s in SCORE_NAMES]
    corrected = corrected_by_category(categories).set_index("category")
    rows = []
    for record in categories.sort_values("category").to_dict("records"):
        name = str(record["category"])
        row = [esc(name)] + [
            number(int(record[c]) if d is None else record[c], source, ["category", name, c], digits=d)
            for c, _, d in columns]
        row += [derived_number(corrected.at[name, s], CORRECTED, source, ["category", name, s],
                               css="below-chance" if corrected.at[name, s] <= 0 else "") for s in SCORE_NAMES]
        rows.append(row)
    header = ["category"] + [label for _, label, _ in columns] + [f"corrected {SCORE_LABELS[s]}" for s in SCORE_NAMES]
    return table(header, rows, "categories")


# ---------------------------------------------------------------- across seeds

SEED_RETRIEVAL_LABELS = {"r10_a2i": "R@10 image from caption", "r10_i2a": "R@10 caption from image",
                         "meanpool_r10_a2i": "pooled R@10 (mean-pooled) a2i",
                         "meanpool_r10_i2a": "pooled R@10 (mean-pooled) i2a"}


def seeds_html(seed_table: pd.DataFrame, seeds_summary: dict, caption_html: str) -> str:
    """One row per seed (seeds/seed_scores.csv), then the mean ± sd (ddof=1) and the range
    of each figure across seeds (seeds/summary.json)."""
    table_source, summary_source = SOURCES["seed_table"], SOURCES["seeds_summary"]
    retrieval = list(SEED_RETRIEVAL_LABELS)
    rows = []
    for record in seed_table.to_dict("records"):
        seed = str(int(record["seed"]))

        def cell(column: str, digits: int | None = 3) -> str:
            value = int(record[column]) if digits is None else record[column]
            return number(value, table_source, ["seed", seed, column], digits=digits)

        label = f"{seed} (main)" if int(record["seed"]) == seeds_summary["main_seed"] else seed
        rows.append([esc(label)]
                    + [cell(f"{s}_mean") + f" <small>[{cell(f'{s}_ci_low')}, {cell(f'{s}_ci_high')}]</small>"
                       for s in SCORE_NAMES]
                    + [cell(c) for c in retrieval] + [cell("best_epoch", None)])
    figures = seeds_summary["figures"]

    def stat(name: str, key: str, digits: int | None = 3) -> str:
        return number(figures[name][key], summary_source, ["figures", name, key], digits=digits)

    names = [f"{s}_mean" for s in SCORE_NAMES] + retrieval + ["best_epoch"]
    n = figures[names[0]]["n"]
    rows.append([esc(f"mean ± sd ({n} seeds)")] + [stat(name, "mean") + " ± " + stat(name, "sd") for name in names])
    rows.append([esc("min – max")] + [stat(name, "min", 3 if name != "best_epoch" else None) + " – "
                                      + stat(name, "max", 3 if name != "best_epoch" else None) for name in names])
    header = (["seed"] + [f"{SCORE_LABELS[s]} [95% interval]" for s in SCORE_NAMES]
              + [SEED_RETRIEVAL_LABELS[c] for c in retrieval] + ["best epoch"])
    return (table(header, rows, "seeds", caption="Each seed's model, then the spread across seeds")
            + f"<p>{caption_html}</p>")


# ---------------------------------------------------------------- retrieval, test set, rejects


def retrieval_html(retrieval: dict) -> str:
    source = SOURCES["retrieval"]
    chance = retrieval.get("chance", {})
    rows = []
    for key, name in (("image_retrieval_from_captions", "image from caption (a2i)"),
                      ("caption_retrieval_from_images", "caption from image (i2a)")):
        figures = retrieval[key]
        row = [esc(name)]
        for k in ("r1", "r5", "r10"):
            level = chance.get(key, {}).get(k)
            shown = number(figures.get(k), source, [key, k])
            if level is not None:
                shown += f' <small>(chance {number(level, source, ["chance", key, k])})</small>'
            row.append(shown)
        row.append(number(figures.get("median_rank"), source, [key, "median_rank"], digits=1))
        rows.append(row)
    pooled = retrieval["pooled_r10"]
    pooled_rows = [[esc(label), number(pooled.get(k), source, ["pooled_r10", k], digits=d)] for k, label, d in (
        ("r10_a2i", "pooled R@10, image from caption", 3), ("r10_i2a", "pooled R@10, caption from image", 3),
        ("chance", "chance", 3), ("pool_size", "pool size (images)", None),
        ("pool_size_requested", "pool size requested (train.pool_size)", None), ("trials", "pools drawn", None))]
    about = (f"Validation split {retrieval.get('split', '?')}: {retrieval.get('n_captions', '?')} captions, "
             f"{retrieval.get('n_images', '?')} images; best checkpoint (epoch {retrieval.get('best_epoch', '?')}, "
             f"validation loss {format_number(retrieval.get('val_loss'), 4)})")
    return (table(["direction", "R@1", "R@5", "R@10", "median rank"], rows, "retrieval", caption=about)
            + table(["the original's protocol", "value"], pooled_rows, "pooled"))


def funnel_html(summary: dict) -> str:
    source = SOURCES["funnel"]
    rows = [[esc(name), number(value, source, ["funnel", name], digits=None if isinstance(value, int) else 3)]
            for name, value in summary["funnel"].items()]
    return table(["step", "count"], rows, "funnel", caption="From captions read to test pairs")


def rejects_html(rejects: list[RejectCount]) -> str:
    """Items rejected per stage (on_error: skip), from the rejects tables and the shards."""
    if not rejects:
        return "<p>No rejects table among the inputs.</p>"
    rows = [[esc(r.stage), f"<code>{esc(r.source)}</code>",
             f'<span class="value" data-rejects="{esc(r.source)}" data-value="{r.count}">{r.count:,}</span>',
             esc(r.example)] for r in rejects]
    return table(["stage", "counted in", "items rejected", "first problem"], rows, "rejects", numeric_from=2,
                 caption="Corpus items left out of the run, per stage (on_error: skip)")


# ---------------------------------------------------------------- the run at a glance


def glance_html(results: Results, run_config: dict, threshold: float) -> str:
    """The settings that decide how to read every number."""
    counts = results.scores_summary["counts"]
    dataset = run_config.get("dataset", {})
    rows = [
        ("Dataset", _dataset_text(dataset) if dataset else "not given"),
        ("Test set", f"{counts['pairs_scored']:,} pairs scored of {counts['pairs_in_table']:,} "
                     f"({counts['utterances_scored']:,} utterances, {counts['images_scored']:,} images, "
                     f"{counts['categories_scored']:,} categories); match.threshold {threshold:g}"),
        ("Model", _model_text(results.retrieval, run_config.get("model", {}))),
        ("Training", _training_text(results.retrieval, run_config.get("train", {}))),
        ("Image features", _features_text(results.visual_attrs[0][1]) if results.visual_attrs else "not given"),
        ("Scoring", _scoring_text(results.scores_summary["options"])),
        ("Tensors", _tensors_text(results.scores_summary["inputs"])),
    ]
    body = "\n".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="glance" id="glance"><tbody>\n{body}\n</tbody></table>'


def _dataset_text(dataset: dict) -> str:
    splits = ", ".join(f"{role} {split}" for role, split in dataset.get("splits", {}).items())
    return f"{dataset.get('name', '?')} (source {dataset.get('source', '?')}); splits: {splits}"


def _model_text(retrieval: dict, model: dict) -> str:
    text = f"{retrieval.get('arch', model.get('arch', '?'))}, similarity {retrieval.get('similarity', '?')}"
    if model:
        text += f"; embed_dim {model.get('embed_dim')}, dropout {model.get('dropout')}"
    return text


def _training_text(retrieval: dict, train: dict) -> str:
    text = (f"{retrieval.get('epochs_trained', '?')} epoch(s), best epoch {retrieval.get('best_epoch', '?')} "
            f"by {retrieval.get('select_by', '?')}")
    if train:
        text += f"; loss {train.get('loss')}, lr {train.get('lr')}, batch {train.get('batch_size')}"
    return text


def _features_text(visual: dict) -> str:
    if visual.get("random_weights"):
        weights = "RANDOM WEIGHTS"
    else:
        weights = f"weights sha256 {str(visual.get('weights_sha256', ''))[:12]}"
    grid = f"{visual.get('grid')} x {visual.get('grid')} x {visual.get('channels')}"
    return f"{visual.get('backbone')} {visual.get('layer', '')} ({grid}), {weights}"


def _scoring_text(options: dict) -> str:
    def family(on) -> str:
        return "softmax" if on else "no softmax (clipped at 0)"

    return (f"mode {options['mode']}; softmax {options['softmax']} (AS family: {family(options['softmax_as_family'])}, "
            f"GS family: {family(options['softmax_gs_family'])}); AS_word normalised by "
            f"{options['as_word_normalization']}; grid {options['grid']}, mask threshold {options['mask_threshold']}; "
            f"seed {options['seed']}, {options['bootstrap']:,} bootstrap resamples")


def _tensors_text(inputs: dict) -> str:
    mapping = inputs.get("time_mapping", {})
    return (f"{inputs.get('tensor_format')} {tuple(inputs.get('tensor_shape', []))}, "
            f"{mapping.get('input_frames_per_frame')} input frames ({mapping.get('hop_s')} s each) per tensor frame; "
            f"{inputs.get('tensor_attrs', {}).get('source', 'source not recorded')}")


# ---------------------------------------------------------------- settings


def settings_html(results: Results, run_config: dict, inputs: ReportInputs) -> str:
    blocks = [yaml_block("Scoring options (scores/summary.json)", results.scores_summary["options"]),
              yaml_block("Tensors and time mapping (scores/summary.json)", results.scores_summary["inputs"])]
    if results.visual_attrs:
        blocks.append(yaml_block("Image features (first visual shard's attributes)", results.visual_attrs[0][1], True))
    if results.audio_attrs:
        blocks.append(yaml_block("Audio features (first audio shard's attributes)", results.audio_attrs[0][1], True))
    if run_config:
        blocks.append(yaml_block("Configuration of the run (the slices the report was given)", run_config))
    paths = [inputs.testdata, inputs.train, inputs.scores, inputs.tensors, inputs.instances, inputs.images,
             *inputs.audio, *inputs.visual, *inputs.rejects]
    blocks += ["<h3>Inputs</h3>", "<ul>" + "".join(f"<li><code>{esc(f)}</code></li>" for f in paths) + "</ul>"]
    return "\n".join(blocks)
