# Feature extraction (the original's features_extraction): per split, an image index and a
# caption index, then one job per (modality, split, shard) so a cluster runs shards in
# parallel. The shard count is known when the DAG is built (no checkpoint): demo.n_images
# for the demo corpus, else the image count of the instances JSON, or for SpokenCOCO of the
# Karpathy index, whose images come from the instances file and folder of their own COCO
# split (val2014 "restval" images in the train index); cached by size and mtime.
# Audio shards take the audio + frames slices, visual shards the visual slice: changing
# audio.n_mels reruns the audio shards (and what reads them), never the visual ones.

from vgsalign.features.plan import plan_splits

FEATURES = f"{RESULTS}/features"

try:
    IMAGE_PLANS = plan_splits(config, USED_SPLITS, instances_json=instances_json, karpathy_index=karpathy_index,
                              cache_dir=f"{FEATURES}/index")
except InputError as err:
    sys.stderr.write(f"vgsalign: {err}\n")
    sys.exit(1)
SHARD_COUNTS = {split: plan.n_shards for split, plan in IMAGE_PLANS.items()}

# every shard file of a modality ('audio' or 'visual') and split, in shard order
FEATURE_SHARDS = {
    (modality, split): [f"{FEATURES}/{modality}/{split}/shard_{k:05d}.h5" for k in range(SHARD_COUNTS[split])]
    for modality in ("audio", "visual")
    for split in USED_SPLITS
}

# settings that change no number (batch size, decoding workers) stay out of params,
# so changing them reruns nothing
VISUAL_SETTINGS = {k: v for k, v in config["visual"].items() if k not in ("batch_size", "num_workers")}


rule features_images:
    input:
        ready=lambda w: corpus_ready(w.split),
        instances=lambda w: [] if IS_DEMO else feature_instances(w.split),
    output:
        images=f"{FEATURES}/index/{{split}}/images.csv",
        rejects=f"{FEATURES}/index/{{split}}/images_rejected.csv",
    params:
        images_from=lambda w: feature_images_args(w.split),
        features=as_json(config["features"]),
        n_shards=lambda w: SHARD_COUNTS[w.split],
        code=code_version("features", "corpus"),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
    threads: 2
    resources:
        mem_mb=JOB_SIZES["features_index"].mem_mb,
        runtime=JOB_SIZES["features_index"].runtime,
    log:
        f"{LOGS}/features/images_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/features_images_{{split}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign features-images {params.images_from}"
        " --features {params.features} --expected-shards {params.n_shards} --threads {threads}"
        " --out {output.images} --rejects {output.rejects} 2>&1 | tee {log}"


rule features_captions:
    input:
        images=rules.features_images.output.images,
        rejected_images=rules.features_images.output.rejects,
    output:
        captions=f"{FEATURES}/index/{{split}}/captions.csv",
        rejects=f"{FEATURES}/index/{{split}}/captions_rejected.csv",
    params:
        source=config["dataset"]["source"],
        speech_root=speech_root(),
        features=as_json(config["features"]),
        code=code_version("features", "corpus"),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
    resources:
        mem_mb=JOB_SIZES["features_index"].mem_mb,
        runtime=JOB_SIZES["features_index"].runtime,
    log:
        f"{LOGS}/features/captions_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/features_captions_{{split}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign features-captions --images {input.images} --rejected-images {input.rejected_images}"
        " --source {params.source} --speech-root {params.speech_root} --split {wildcards.split}"
        " --features {params.features}"
        " --out {output.captions} --rejects {output.rejects} 2>&1 | tee {log}"


rule features_audio:
    input:
        captions=rules.features_captions.output.captions,
    output:
        f"{FEATURES}/audio/{{split}}/shard_{{shard}}.h5",
    params:
        audio=as_json(config["audio"]),
        frames=as_json(config["frames"]),
        features=as_json(config["features"]),
        n_shards=lambda w: SHARD_COUNTS[w.split],
        code=code_version("features", "corpus", "runtime"),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
        shard=r"\d{5}",
    threads: 2
    resources:
        mem_mb=JOB_SIZES["features_audio"].mem_mb,
        runtime=JOB_SIZES["features_audio"].runtime,
    log:
        f"{LOGS}/features/audio_{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/features_audio_{{split}}_{{shard}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign features-audio --captions {input.captions} --split {wildcards.split} --shard {wildcards.shard}"
        " --n-shards {params.n_shards} --audio {params.audio} --frames {params.frames}"
        " --features {params.features} --threads {threads} --out {output} 2>&1 | tee {log}"


rule features_visual:
    input:
        images=rules.features_images.output.images,
        # visual shards hold only the images that have a caption in the plan
        captions=rules.features_captions.output.captions,
    output:
        f"{FEATURES}/visual/{{split}}/shard_{{shard}}.h5",
    params:
        visual=as_json(VISUAL_SETTINGS),
        features=as_json(config["features"]),
        image_dir=lambda w: feature_image_root(w.split),
        n_shards=lambda w: SHARD_COUNTS[w.split],
        code=code_version("features", "corpus", "runtime"),
    wildcard_constraints:
        split="|".join(USED_SPLITS),
        shard=r"\d{5}",
    # decoding workers = threads - 1 (Snakemake scales threads down to the cores given)
    threads: config["visual"]["num_workers"] + 1
    resources:
        mem_mb=JOB_SIZES["features_visual"].mem_mb,
        runtime=JOB_SIZES["features_visual"].runtime,
        gpu=1,
        batch_size=config["visual"]["batch_size"],
    log:
        f"{LOGS}/features/visual_{{split}}_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/features_visual_{{split}}_{{shard}}.tsv"
    conda:
        "../../envs/vgsalign.yaml"
    shell:
        "vgsalign features-visual --images {input.images} --captions {input.captions}"
        " --image-dir {params.image_dir} --split {wildcards.split} --shard {wildcards.shard}"
        " --n-shards {params.n_shards} --visual {params.visual} --features {params.features}"
        " --batch-size {resources.batch_size} --threads {threads} --out {output} 2>&1 | tee {log}"


rule features:
    input:
        [FEATURE_SHARDS[key] for key in sorted(FEATURE_SHARDS)],
        expand(rules.features_captions.output, split=USED_SPLITS),
