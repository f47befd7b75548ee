# Model training and the alignment-tensor dump (see workflow/rules/common.smk for shared
# paths and helpers; FEATURE_SHARDS comes from workflow/rules/features.smk).
# Training writes its per-epoch state to {RESULTS}/train/state/ as well, which is not a
# declared output: the workflow does not delete it when a run is interrupted, so with
# train.resume on the rerun continues after the last completed epoch, when every setting
# that affects the result equals the checkpoint's (vgsalign.train.resume).

TRAIN = f"{RESULTS}/train"
# train.resume is operational, like a resource: it reaches the step through `resources`, not
# params, so switching it never forces a retrain
TRAIN_RESUME = str(config["train"]["resume"])


rule train_model:
    input:
        train_audio=FEATURE_SHARDS[("audio", SPLITS["train"])],
        train_visual=FEATURE_SHARDS[("visual", SPLITS["train"])],
        val_audio=validation_shards("audio"),
        val_visual=validation_shards("visual"),
    output:
        best=f"{TRAIN}/checkpoint_best.pt",
        last=f"{TRAIN}/checkpoint_last.pt",
        history=f"{TRAIN}/history.csv",
        timing=f"{TRAIN}/timing.csv",
        curves=f"{TRAIN}/curves.png",
        retrieval=f"{TRAIN}/retrieval.json",
    params:
        model=as_json(config["model"]),
        train=train_slice(),
        frames=as_json(config["frames"]),
        train_split=SPLITS["train"],
        val_split=SPLITS["val"],
        out_dir=lambda w, output: str(Path(output.best).parent),
        code=code_version("train", "features", "runtime"),
    threads: 8
    resources:
        mem_mb=JOB_SIZES["train_model"].mem_mb,
        runtime=JOB_SIZES["train_model"].runtime,
        gpu=1,
        train_resume=TRAIN_RESUME,
    log:
        f"{LOGS}/train/train.log",
    benchmark:
        f"{BENCHMARKS}/train_model.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign train-model --train-audio {input.train_audio} --train-visual {input.train_visual}"
        " --val-audio {input.val_audio} --val-visual {input.val_visual}"
        " --train-split {params.train_split} --val-split {params.val_split}"
        " --model {params.model} --train {params.train} --frames {params.frames} --resume {resources.train_resume}"
        " --threads {threads} --out-dir {params.out_dir} 2>&1 | tee {log}"


rule tensors_dump:
    input:
        checkpoint=rules.train_model.output.best,
        pairs=f"{RESULTS}/testdata/pairs.csv",
        audio=FEATURE_SHARDS[("audio", SPLITS["test"])],
        visual=FEATURE_SHARDS[("visual", SPLITS["test"])],
    output:
        f"{RESULTS}/tensors/tensors.h5",
    params:
        model=as_json(config["model"]),
        frames=as_json(config["frames"]),
        device=config["train"]["device"],
        code=code_version("train", "features", "runtime"),
    threads: 4
    resources:
        mem_mb=JOB_SIZES["tensors_dump"].mem_mb,
        runtime=JOB_SIZES["tensors_dump"].runtime,
        gpu=1,
    log:
        f"{LOGS}/tensors/tensors.log",
    benchmark:
        f"{BENCHMARKS}/tensors_dump.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign tensors-dump --checkpoint {input.checkpoint} --pairs {input.pairs}"
        " --audio {input.audio} --visual {input.visual} --model {params.model} --frames {params.frames}"
        " --device {params.device} --threads {threads} --out {output} 2>&1 | tee {log}"


# Several seeds (train.seeds): train.seed's model is the one above; every other seed of
# the comparison (compared_seeds, common.smk) is trained and dumped by the same steps with
# only train.seed replaced, under seeds/seed_<k>/ (seed_folder). The scores and the seeds'
# summary are in scores.smk.
SEEDS = f"{RESULTS}/seeds"
EXTRA_SEEDS = [seed for seed in compared_seeds() if seed != config["train"]["seed"]]
SEED_TRAIN = f"{SEEDS}/seed_{{seed}}/train"


use rule train_model as train_model_seed with:
    output:
        best=f"{SEED_TRAIN}/checkpoint_best.pt",
        last=f"{SEED_TRAIN}/checkpoint_last.pt",
        history=f"{SEED_TRAIN}/history.csv",
        timing=f"{SEED_TRAIN}/timing.csv",
        curves=f"{SEED_TRAIN}/curves.png",
        retrieval=f"{SEED_TRAIN}/retrieval.json",
    params:
        train=lambda w: train_slice(seed=w.seed),
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"{LOGS}/seeds/seed_{{seed}}/train.log",
    benchmark:
        f"{BENCHMARKS}/train_model_seed_{{seed}}.tsv"


use rule tensors_dump as tensors_dump_seed with:
    input:
        checkpoint=f"{SEED_TRAIN}/checkpoint_best.pt",
        pairs=f"{RESULTS}/testdata/pairs.csv",
        audio=FEATURE_SHARDS[("audio", SPLITS["test"])],
        visual=FEATURE_SHARDS[("visual", SPLITS["test"])],
    output:
        f"{SEEDS}/seed_{{seed}}/tensors/tensors.h5",
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"{LOGS}/seeds/seed_{{seed}}/tensors.log",
    benchmark:
        f"{BENCHMARKS}/tensors_dump_seed_{{seed}}.tsv"


rule train:
    input:
        rules.train_model.output,
        expand(rules.train_model_seed.output, seed=EXTRA_SEEDS),
        rules.features.input,


rule tensors:
    input:
        rules.tensors_dump.output,
        expand(rules.tensors_dump_seed.output, seed=EXTRA_SEEDS),
        rules.train.input,
        rules.testdata.input,
