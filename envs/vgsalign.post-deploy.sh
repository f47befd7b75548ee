#!/usr/bin/env bash
# Run by Snakemake inside the freshly created environment of envs/vgsalign.yaml
# (`--sdm conda`), in the directory Snakemake runs in: the vgsalign checkout.
# Installs the package editable, so rules run the checkout's code (and its `code` params
# rerun what an edit affects without rebuilding the environment).
set -euo pipefail
if ! grep -qs '^name = "vgsalign"' pyproject.toml; then
    echo "vgsalign: run snakemake from the vgsalign checkout to create its conda environment" \
         "(no vgsalign pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps --editable .
