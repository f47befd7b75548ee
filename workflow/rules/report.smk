# The run's report (see workflow/rules/common.smk for shared paths and helpers): one
# self-contained HTML page, results/<name>/report.html, and each of its figures as a PNG
# under results/<name>/report/, marked with report() for `snakemake --report`; the
# captions (workflow/report/*.rst) are generated from src/vgsalign/report/captions.yaml.
# The rule reads the results of every stage and the rejects tables of the stages that
# read the corpus; its params carry exactly the config slices the page shows (and the
# report's own), so a changed report.n_examples reruns only this rule, and any stage
# that reruns reruns it too. SCORE_NAMES comes from scores.smk, FEATURE_SHARDS and
# VISUAL_SETTINGS from features.smk.

import time

REPORT = f"{RESULTS}/report"
REPORT_HTML = f"{RESULTS}/report.html"
REPORT_EXAMPLES = [f"{REPORT}/example_{k:02d}.png" for k in range(1, config["report"]["n_examples"] + 1)]
# the settings shown on the page: what decides its numbers (speed-only settings left out, as in features.smk)
REPORT_RUN_CONFIG = {
    "dataset": config["dataset"],
    "word_vectors": config["word_vectors"],
    "nouns": config["nouns"],
    "vocab": config["vocab"],
    "match": config["match"],
    "frames": config["frames"],
    "audio": config["audio"],
    "visual": VISUAL_SETTINGS,
    "model": config["model"],
    "train": config["train"],
    "scores": config["scores"],
    "report": config["report"],
}
# every split's visual shards the model met (train, val) or was tested on, each once
REPORT_VISUAL_SHARDS = sorted({path for split in USED_SPLITS for path in FEATURE_SHARDS[("visual", split)]})
# when the workflow started: the run's ending (Snakefile's onsuccess) names the report only if this run wrote it
WORKFLOW_STARTED = time.time()
# the report() captions, generated from src/vgsalign/report/captions.yaml
CAPTIONS = "../report"



rule report_html:
    input:
        testdata_summary=rules.testdata_summary.output.json,
        similarities=rules.testdata_similarities.output.similarities,
        pairs=rules.testdata_pairs.output.pairs,
        words=rules.testdata_dataset.output.words,
        history=rules.train_model.output.history,
        retrieval=rules.train_model.output.retrieval,
        score_summary=rules.score_pairs.output.summary,
        score_tables=[
            rules.score_pairs.output.pairs,
            rules.score_pairs.output.excluded,
            rules.score_pairs.output.categories,
            rules.score_pairs.output.confusion_counts,
            *rules.score_pairs.output.confusion,
        ],
        tensors=rules.tensors_dump.output[0],
        audio=FEATURE_SHARDS[("audio", SPLITS["test"])],
        visual=REPORT_VISUAL_SHARDS,
        ready=corpus_ready(SPLITS["test"]),
        # the demo corpus declares only its manifest; a real corpus's JSON is a plain input
        instances=[] if IS_DEMO else instances_json(SPLITS["test"]),
        # what the stages that read the corpus left out (on_error: skip), counted on the page
        rejects=[
            rules.testdata_dataset.output.rejects,
            *expand(rules.features_images.output.rejects, split=USED_SPLITS),
            *expand(rules.features_captions.output.rejects, split=USED_SPLITS),
        ],
        # with several training seeds (train.seeds): the section Across seeds
        seeds=rules.seeds_summary.output if compared_seeds() else [],
    output:
        html=REPORT_HTML,
        similarities=report(
            f"{REPORT}/similarities.png",
            caption=f"{CAPTIONS}/report_similarities.rst",
            category="Test set",
        ),
        training=report(
            f"{REPORT}/training.png",
            caption=f"{CAPTIONS}/report_training.rst",
            category="Training",
        ),
        categories=[
            report(
                f"{REPORT}/category_{name}.png",
                caption=f"{CAPTIONS}/report_categories.rst",
                category="Scores per category",
            )
            for name in SCORE_NAMES
        ],
        chance=[
            report(
                f"{REPORT}/{name}.png",
                caption=f"{CAPTIONS}/report_{caption}.rst",
                category="Scores against chance",
            )
            for name, caption in (
                ("chance_corrected", "chance_corrected"),
                ("scatter_mask_area", "scatter_mask"),
                ("scatter_word_duration", "scatter_duration"),
            )
        ],
        confusion=[
            report(
                f"{REPORT}/confusion_{name}.png",
                caption=f"{CAPTIONS}/report_confusion.rst",
                category="Confusions",
            )
            for name in SCORE_NAMES
        ],
        examples=[
            report(
                path,
                caption=f"{CAPTIONS}/report_examples.rst",
                category="Alignment examples",
            )
            for path in REPORT_EXAMPLES
        ],
    params:
        report=as_json(config["report"]),
        match=as_json(config["match"]),
        run_config=as_json(REPORT_RUN_CONFIG),
        testdata=lambda w, input: str(Path(input.testdata_summary).parent),
        train=lambda w, input: str(Path(input.history).parent),
        scores=lambda w, input: str(Path(input.score_summary).parent),
        instances=instances_json(SPLITS["test"]),
        images=image_dir(SPLITS["test"]),
        figures=lambda w, output: str(Path(output.similarities).parent),
        seeds=f"--seeds-dir {SEEDS}" if compared_seeds() else "",
        code=code_version("report", "scores", "testdata", "features", "corpus", "tables"),
    resources:
        mem_mb=JOB_SIZES["report_html"].mem_mb,
        runtime=JOB_SIZES["report_html"].runtime,
    log:
        f"{LOGS}/report/report.log",
    benchmark:
        f"{BENCHMARKS}/report_html.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign report-html --testdata-dir {params.testdata} --train-dir {params.train} --scores-dir {params.scores}"
        " --tensors {input.tensors} --instances {params.instances} --images {params.images}"
        " --audio {input.audio} --visual {input.visual} --rejects {input.rejects}"
        " --report {params.report} --match {params.match} --run-config {params.run_config} {params.seeds}"
        " --figures {params.figures} --out {output.html} 2>&1 | tee {log}"


rule report:
    input:
        rules.report_html.output,
        rules.scores.input,
