# vgsalign: from spoken captions and images to word-object alignment scores.
# Main job: `snakemake --cores 8 report` (results/<name>/report.html). Targets: demo_corpus,
# resources, testdata, features, train, tensors, scores, report (rule all = report).
# Snakemake's own report of the marked figures: `snakemake --report report.zip` after a run.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/alignments.smk"
include: "workflow/rules/testdata.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/scores.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.report.input,
    default_target: True


# How a run ends: on the report's path and its headline result when this run wrote the
# report (vgsalign.report.headline); nothing more for other targets. Printed at exit, so
# that it comes after Snakemake's own closing lines (the log's path, the elapsed time).
onsuccess:
    import atexit
    from vgsalign.report.headline import run_ending

    seeds = SEEDS_SUMMARY if compared_seeds() else None   # with train.seeds: AS_object's mean ± sd
    if (line := run_ending(REPORT_HTML, rules.score_pairs.output.summary, WORKFLOW_STARTED, seeds)) is not None:
        atexit.register(print, line, file=sys.stderr, flush=True)


onerror:
    print(f"vgsalign: the run stopped before its end; the failed step's log is named above (all logs: {LOGS}/)",
          file=sys.stderr, flush=True)
