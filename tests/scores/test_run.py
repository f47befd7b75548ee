"""`vgsalign score-pairs` end to end on small synthetic files, tensor formats, bad input."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat
from tests.helpers.scores import SCORES, rle_of, synthetic_dataset, write_tensors_h5

from vgsalign.cli import run_main
from vgsalign.scores.instances import category_mask
from vgsalign.scores.run import main

SETTINGS = {"mode": "reference", "softmax": "both", "as_word_normalization": "object", "grid": 224,
            "mask_threshold": 0.01, "seed": 0, "bootstrap": 200}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("scores"), n_images=8, captions_per_image=3,
                             pairs_per_caption=2, n_frames=32, grid=7)


@pytest.fixture(scope="module")
def scored(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    retrieval = out / "retrieval.json"
    retrieval.write_text(json.dumps({"audio_to_image": {"r@10": 0.25}}))
    code = main(["--tensors", str(data["tensors"]), "--pairs", str(data["pairs"]),
                 "--instances", str(data["instances"]), "--out", str(out / "scores"),
                 "--scores", json.dumps(SETTINGS), "--threads", "2", "--retrieval", str(retrieval)])
    assert code == 0
    return out / "scores"


def _run(data, out, *extra, tensors=None, pairs=None):
    argv = ["--tensors", str(tensors or data["tensors"]), "--pairs", str(pairs or data["pairs"]),
            "--instances", str(data["instances"]), "--out", str(out), "--bootstrap", "50", "--threads", "1",
            *extra]
    return run_main("score", main, argv)


def test_outputs_and_recorded_options(scored, data):
    pairs = pd.read_csv(data["pairs"])
    table = pd.read_csv(scored / "pair_scores.csv", dtype={"utt_id": str})
    assert len(table) == len(pairs) == 48
    for column in ["utt_id", "image_id", "word_index", "word", "category", *SCORES,
                   *[f"random_{s}" for s in SCORES], *[f"chance_{s}" for s in SCORES],
                   "mask_area_share", "word_duration_s", "mode", "softmax", "as_word_normalization"]:
        assert column in table.columns, column
    assert table[list(SCORES)].notna().all().all()
    assert ((table[list(SCORES)] >= 0) & (table[list(SCORES)] <= 1 + 1e-12)).all().all()
    # softmax both: the identities of docs/design.md hold pair by pair
    np.testing.assert_allclose(table["gs_object"], table["as_object"], rtol=1e-9)
    np.testing.assert_allclose(table["gs_word"], table["as_word"], rtol=1e-9)
    summary = json.loads((scored / "summary.json").read_text())
    assert summary["options"]["mode"] == "reference" and summary["options"]["softmax"] == "both"
    assert summary["options"]["seed"] == 0 and summary["options"]["as_word_normalization"] == "object"
    assert summary["inputs"]["tensors"] == str(data["tensors"])
    assert summary["inputs"]["time_mapping"]["input_frames_per_frame"] == 16.0
    assert summary["counts"]["pairs_scored"] == 48 and summary["counts"]["pairs_excluded"] == 0
    assert summary["retrieval"] == {"audio_to_image": {"r@10": 0.25}}
    overall = summary["overall"]
    assert overall["as_object_mean"] == pytest.approx(table["as_object"].mean())
    assert overall["as_object_ci_low"] <= overall["as_object_mean"] <= overall["as_object_ci_high"]
    assert (table["mode"] == "reference").all()


def test_category_table(scored):
    table = pd.read_csv(scored / "pair_scores.csv", dtype={"utt_id": str})
    categories = pd.read_csv(scored / "category_scores.csv")
    assert categories["n_pairs"].sum() == len(table)
    for _, row in categories.iterrows():
        group = table[table["category"] == row["category"]]
        assert row["n_pairs"] == len(group)
        assert row["n_utterances"] == group["utt_id"].nunique()
        assert row["as_object_mean"] == pytest.approx(group["as_object"].mean())
        assert row["mean_mask_area_share"] == pytest.approx(group["mask_area_share"].mean())
        assert row["mean_word_duration_s"] == pytest.approx(group["word_duration_s"].mean())
        assert row["as_object_ci_low"] <= row["as_object_mean"] + 1e-12 <= row["as_object_ci_high"] + 2e-12


def test_confusion_tables(scored):
    categories = pd.read_csv(scored / "category_scores.csv")
    for score in SCORES:
        table = pd.read_csv(scored / f"confusion_{score}.csv")
        assert list(table["category"]) == sorted(table["category"])
        for _, row in table.iterrows():
            own = row[row["category"]]
            assert own == pytest.approx(categories.set_index("category").loc[row["category"], f"{score}_mean"])
            if score.endswith("object"):   # shares of one map: own + other categories + background = 1
                assert own + row["other_categories"] + row["background"] == pytest.approx(1.0)
    counts = pd.read_csv(scored / "confusion_counts.csv")
    assert set(counts["category"]) == set(categories["category"])


def test_results_do_not_depend_on_workers(data, scored, tmp_path):
    assert _run(data, tmp_path / "one", "--scores", json.dumps(SETTINGS) , "--bootstrap", "200") == 0
    for name in ["pair_scores.csv", "category_scores.csv", *[f"confusion_{s}.csv" for s in SCORES]]:
        assert (tmp_path / "one" / name).read_bytes() == (scored / name).read_bytes(), name


def test_results_do_not_depend_on_processes(data, scored, tmp_path):
    """Twelve chunks in one process, or over three worker processes finishing in any order:
    the same bytes. (Another chunking batches other utterances together: the same numbers
    up to the last bits of BLAS sums.)"""
    from vgsalign.scores.plan import score_settings
    from vgsalign.scores.run import run_scores

    for threads in (1, 3):
        run_scores(tensors=data["tensors"], pairs_csv=data["pairs"], instances_json=data["instances"],
                   out_dir=tmp_path / f"chunked{threads}", settings=score_settings(**SETTINGS), threads=threads,
                   chunk_utterances=2, retrieval=scored.parent / "retrieval.json")
    for name in ["pair_scores.csv", "excluded_pairs.csv", "category_scores.csv", "confusion_counts.csv",
                 *[f"confusion_{s}.csv" for s in SCORES]]:
        assert (tmp_path / "chunked1" / name).read_bytes() == (tmp_path / "chunked3" / name).read_bytes(), name
    assert json.loads((tmp_path / "chunked3" / "summary.json").read_text())["workers"] == 3
    chunked = pd.read_csv(tmp_path / "chunked3" / "pair_scores.csv")
    whole = pd.read_csv(scored / "pair_scores.csv")
    np.testing.assert_allclose(chunked[list(SCORES)], whole[list(SCORES)], rtol=1e-12)


def test_oracle_tensors_beat_both_baselines(tmp_path):
    data = synthetic_dataset(tmp_path / "oracle", n_images=4, captions_per_image=2, pairs_per_caption=1,
                             n_frames=64, grid=14, oracle=True)
    assert _run(data, tmp_path / "out") == 0
    table = pd.read_csv(tmp_path / "out" / "pair_scores.csv")
    assert (table["as_object"] > 0.9).all()
    assert (table["as_object"] > table["random_as_object"] + 0.5).all()
    assert (table["random_as_object"] - table["chance_as_object"]).abs().max() < 0.1


def test_exact_mode_and_image_normalization(data, tmp_path):
    assert _run(data, tmp_path / "exact", "--mode", "exact", "--as-word-normalization", "image") == 0
    table = pd.read_csv(tmp_path / "exact" / "pair_scores.csv")
    np.testing.assert_allclose(table["gs_object"], table["as_object"], rtol=1e-9)
    np.testing.assert_allclose(table["as_word"], table["gs_word"] * table["mask_area_share"], rtol=1e-9)
    np.testing.assert_allclose(table["chance_as_word"], table["chance_gs_word"] * table["mask_area_share"])
    summary = json.loads((tmp_path / "exact" / "summary.json").read_text())
    assert summary["options"]["mode"] == "exact"


def test_softmax_none_separates_the_families(data, tmp_path):
    assert _run(data, tmp_path / "none", "--softmax", "none") == 0
    table = pd.read_csv(tmp_path / "none" / "pair_scores.csv")
    assert (table["gs_object"] - table["as_object"]).abs().max() > 1e-4
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert summary["options"]["softmax_as_family"] is False


def test_npy_and_mat_tensors_score_like_h5(data, scored, tmp_path):
    with h5py.File(data["tensors"]) as h5:
        avt = h5["avt"][()]
        ids = [u.decode() for u in h5["utt_id"][()]]
    reference = pd.read_csv(scored / "pair_scores.csv")
    # .npy (N, T, H, W) with its sidecar id list
    np.save(tmp_path / "model.npy", avt)
    (tmp_path / "model.utt_ids.txt").write_text("\n".join(ids) + "\n")
    assert _run(data, tmp_path / "npy", "--frames-per-tensor-frame", "16", tensors=tmp_path / "model.npy") == 0
    got = pd.read_csv(tmp_path / "npy" / "pair_scores.csv")
    np.testing.assert_allclose(got[list(SCORES)], reference[list(SCORES)], rtol=1e-12)
    # (N, T, H*W) with a square grid works too
    np.save(tmp_path / "flat.npy", avt.reshape(len(avt), avt.shape[1], -1))
    (tmp_path / "flat.utt_ids.txt").write_text("\n".join(ids) + "\n")
    assert _run(data, tmp_path / "flat", tensors=tmp_path / "flat.npy") == 0
    got = pd.read_csv(tmp_path / "flat" / "pair_scores.csv")
    np.testing.assert_allclose(got[list(SCORES)], reference[list(SCORES)], rtol=1e-12)
    # .mat with out_layer (N, T, H*W), mapping from max_frames / T, ids given explicitly
    savemat(tmp_path / "out_layer.mat", {"out_layer": avt.reshape(len(avt), avt.shape[1], -1)})
    shutil.copy(tmp_path / "model.utt_ids.txt", tmp_path / "ids.txt")
    assert _run(data, tmp_path / "mat", "--utt-ids", str(tmp_path / "ids.txt"),
                tensors=tmp_path / "out_layer.mat") == 0
    got = pd.read_csv(tmp_path / "mat" / "pair_scores.csv")
    np.testing.assert_allclose(got[list(SCORES)], reference[list(SCORES)], rtol=1e-12)
    # MATLAB v7.3 (HDF5, stored transposed)
    with h5py.File(tmp_path / "v73.mat", "w") as h5:
        h5["out_layer"] = avt.reshape(len(avt), avt.shape[1], -1).transpose()
    shutil.copy(tmp_path / "model.utt_ids.txt", tmp_path / "v73.utt_ids.txt")
    assert _run(data, tmp_path / "v73", tensors=tmp_path / "v73.mat") == 0
    got = pd.read_csv(tmp_path / "v73" / "pair_scores.csv")
    np.testing.assert_allclose(got[list(SCORES)], reference[list(SCORES)], rtol=1e-12)


def test_console_script_and_settings_conflict(data, tmp_path, capsys):
    code = _run(data, tmp_path / "x", "--scores", json.dumps(SETTINGS), "--mode", "exact")
    assert code == 2
    assert "--mode" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "vgsalign.cli", "score", "--tensors", str(data["tensors"]),
                             "--pairs", str(data["pairs"]), "--instances", str(data["instances"]),
                             "--out", str(tmp_path / "cli"), "--bootstrap", "20", "--threads", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "as_object" in result.stdout
    assert (tmp_path / "cli" / "summary.json").exists()


# ---------------------------------------------------------------- bad input


def _edited_pairs(data, tmp_path, edit):
    pairs = pd.read_csv(data["pairs"], dtype={"utt_id": str})
    pairs = edit(pairs)
    path = tmp_path / "pairs.csv"
    pairs.to_csv(path, index=False)
    return path


def test_missing_utterances_error_or_excluded(data, tmp_path, capsys):
    def add_missing(p):
        extra = p.iloc[:3].copy()
        extra["utt_id"] = ["ghost_1", "ghost_2", "ghost_2"]
        return pd.concat([p, extra])
    pairs = _edited_pairs(data, tmp_path, add_missing)
    assert _run(data, tmp_path / "a", pairs=pairs) == 2
    err = capsys.readouterr().err
    assert "2 utterance(s)" in err and "ghost_1" in err and "3 pairs" in err
    assert _run(data, tmp_path / "b", "--on-missing", "exclude", pairs=pairs) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["counts"]["excluded_by_reason"] == {"utterance_not_in_tensors": 3}
    excluded = pd.read_csv(tmp_path / "b" / "excluded_pairs.csv")
    assert sorted(excluded["utt_id"]) == ["ghost_1", "ghost_2", "ghost_2"]


def test_nonfinite_tensor_is_an_error(data, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    shutil.copy(data["tensors"], bad)
    with h5py.File(bad, "a") as h5:
        row = h5["avt"][2]
        row[3, 1, 1] = np.nan
        h5["avt"][2] = row
        bad_id = h5["utt_id"][2].decode()
    assert _run(data, tmp_path / "out", tensors=bad) == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and bad_id in err


def test_wrong_rank_is_an_error(data, tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.zeros((24, 32)))
    (tmp_path / "flat.utt_ids.txt").write_text("\n".join(f"u{i}" for i in range(24)))
    assert _run(data, tmp_path / "out", tensors=tmp_path / "flat.npy") == 2
    assert "rank 2" in capsys.readouterr().err
    with h5py.File(tmp_path / "rank3.h5", "w") as h5:
        h5["avt"] = np.zeros((2, 3, 4))
        h5["utt_id"] = np.array(["a", "b"], dtype=h5py.string_dtype())
    assert _run(data, tmp_path / "out", tensors=tmp_path / "rank3.h5") == 2
    assert "rank 3" in capsys.readouterr().err


def test_unknown_category_name_is_an_error(data, tmp_path, capsys):
    pairs = _edited_pairs(data, tmp_path, lambda p: p.assign(category=["unicorn"] + list(p["category"][1:])))
    assert _run(data, tmp_path / "out", pairs=pairs) == 2
    assert "unicorn" in capsys.readouterr().err


def test_pair_level_problems_are_counted_exclusions(data, tmp_path):
    instances = json.loads(data["instances"].read_text())
    annotated = {(a["image_id"], a["category_id"]) for a in instances["annotations"]}

    def edit(p):
        p = p.copy()
        p.loc[0, "offset_frame"] = 600                                  # past the 512 input frames
        p.loc[1, "offset_frame"] = p.loc[1, "onset_frame"]              # empty
        absent = next(c for c, n in [(1, "person"), (17, "cat"), (18, "dog"), (62, "chair")]
                      if (p.loc[2, "image_id"], c) not in annotated)
        p.loc[2, "category_id"] = absent
        p.loc[2, "category"] = {1: "person", 17: "cat", 18: "dog", 62: "chair"}[absent]
        return p
    pairs = _edited_pairs(data, tmp_path, edit)
    assert _run(data, tmp_path / "out", pairs=pairs) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["excluded_by_reason"] == {
        "span_outside_tensor": 1, "empty_span": 1, "category_not_in_image": 1}
    assert summary["counts"]["pairs_scored"] == 45
    excluded = pd.read_csv(tmp_path / "out" / "excluded_pairs.csv")
    assert len(excluded) == 3 and excluded["reason"].notna().all()
    scores = pd.read_csv(tmp_path / "out" / "pair_scores.csv")
    assert np.isfinite(scores[list(SCORES)].to_numpy()).all()


def test_vanishing_mask_is_a_counted_exclusion(tmp_path):
    from tests.helpers.scores import pairs_frame, rle_of, write_instances

    tiny = np.zeros((2240, 2240), dtype=bool)
    tiny[1000, 1000] = True
    big = np.zeros((2240, 2240), dtype=bool)
    big[100:900, 200:1200] = True
    instances = write_instances(tmp_path / "instances.json", [{"id": 1, "height": 2240, "width": 2240}],
                                [{"image_id": 1, "category_id": 1, "segmentation": rle_of(tiny)},
                                 {"image_id": 1, "category_id": 18, "segmentation": rle_of(big)}],
                                [(1, "person"), (18, "dog")])
    pairs = pairs_frame([
        {"utt_id": "u", "image_id": 1, "word_index": 0, "word": "man", "category": "person", "category_id": 1,
         "onset_s": 0.5, "offset_s": 0.8, "pad_frames": 100},
        {"utt_id": "u", "image_id": 1, "word_index": 3, "word": "dog", "category": "dog", "category_id": 18,
         "onset_s": 1.0, "offset_s": 1.3, "pad_frames": 100},
    ])
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    tensors = write_tensors_h5(tmp_path / "t.h5", np.random.default_rng(0).normal(size=(1, 64, 14, 14)),
                               ["u"], [1], [100], 8)
    data = {"instances": instances, "pairs": tmp_path / "pairs.csv", "tensors": tensors}
    assert _run(data, tmp_path / "out") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["excluded_by_reason"] == {"mask_vanishes": 1}
    assert pd.read_csv(tmp_path / "out" / "excluded_pairs.csv")["word"].tolist() == ["man"]
    # at the image's own resolution the one-pixel mask is still there
    assert _run(data, tmp_path / "exact", "--mode", "exact") == 0
    assert json.loads((tmp_path / "exact" / "summary.json").read_text())["counts"]["pairs_scored"] == 2


def test_tensor_time_mapping_conflict(data, tmp_path, capsys):
    assert _run(data, tmp_path / "out", "--frames-per-tensor-frame", "8") == 2
    assert "contradicts" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["reference", "exact"])
def test_annotation_of_another_size_stops_or_is_skipped(data, tmp_path, capsys, mode):
    """An RLE sized for another image: one line naming the annotation, never another mask."""
    instances = json.loads(data["instances"].read_text())
    victim = next(a for a in instances["annotations"] if isinstance(a["segmentation"], dict))
    h, w = victim["segmentation"]["size"]
    victim["segmentation"] = rle_of(np.ones((w, h), dtype=bool))              # transposed
    bad = tmp_path / "instances.json"
    bad.write_text(json.dumps(instances))
    edited = {**data, "instances": bad}
    assert _run(edited, tmp_path / "out", "--mode", mode) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "IndexError" not in err
    line = next(line for line in err.splitlines() if "error:" in line)
    assert str(bad) in line and f"annotation {victim['id']} (image {victim['image_id']})" in line
    assert "transposed" in line
    assert not (tmp_path / "out").exists()
    assert _run(edited, tmp_path / "skip", "--mode", mode, "--on-error", "skip") == 0
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["counts"]["annotations_skipped"] == {"rle_size_mismatch": 1}
    assert summary["options"]["on_error"] == "skip"


def _with_offset(data, tmp_path, offset: float):
    """A copy of the tensors recording input_frames_offset (frame k covers [offset + k r, offset + (k+1) r))."""
    shifted = tmp_path / "shifted.h5"
    shutil.copy(data["tensors"], shifted)
    with h5py.File(shifted, "a") as h5:
        h5.attrs["input_frames_offset"] = offset
        avt, ids = h5["avt"][()], [u.decode() for u in h5["utt_id"][()]]
    return shifted, dict(zip(ids, avt))


@pytest.mark.parametrize("softmax,normalization", [("both", "object"), ("none", "image")])
def test_input_frames_offset_reference_matches_the_upsampled_oracle(tmp_path, softmax, normalization):
    from tests.helpers.scores import upsampled_reference_scores
    from vgsalign.scores.instances import load_instances
    from vgsalign.scores.masks import reference_mask

    data = synthetic_dataset(tmp_path / "d", n_images=3, captions_per_image=2, pairs_per_caption=2,
                             n_frames=16, grid=4, image_size=(30, 40), seed=5)
    pairs = pd.read_csv(data["pairs"], dtype={"utt_id": str})
    pairs.loc[0, "offset_frame"] = 500                                   # reaches past the covered 488
    pairs.loc[1, ["onset_frame", "offset_frame"]] = [495, 505]           # wholly past it
    pairs.to_csv(data["pairs"], index=False)
    tensors, avt_of = _with_offset(data, tmp_path, -24.0)
    assert _run(data, tmp_path / "out", "--grid", "32", "--softmax", softmax, "--as-word-normalization",
                normalization, "--on-missing", "error", tensors=tensors) == 0
    table = pd.read_csv(tmp_path / "out" / "pair_scores.csv", dtype={"utt_id": str})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"]["time_mapping"]["input_frames_offset"] == -24.0
    instances = load_instances(data["instances"])
    for _, pair in table.iterrows():
        image = instances.images[int(pair["image_id"])]
        mask = reference_mask(category_mask(image, int(pair["category_id"])), 32, 0.01)
        expected = upsampled_reference_scores(avt_of[pair["utt_id"]], int(pair["onset_frame"]),
                                              int(pair["offset_frame"]), mask, 512, softmax, normalization,
                                              input_frames_offset=-24)
        for score in SCORES:
            assert pair[score] == pytest.approx(expected[score], rel=1e-9, abs=1e-12), score
    # the offset matters: without it the same pairs score differently
    assert _run(data, tmp_path / "plain", "--grid", "32", "--softmax", softmax, "--as-word-normalization",
                normalization) == 0
    plain = pd.read_csv(tmp_path / "plain" / "pair_scores.csv", dtype={"utt_id": str})
    both = table.merge(plain, on=["utt_id", "word_index"], suffixes=("", "_plain"))
    assert len(both) == len(table) and (both["as_object"] - both["as_object_plain"]).abs().max() > 1e-6
    # the tensor covers [-24, 488): a word reaching past 488 is clipped to it, one starting there excluded
    pairs = pd.read_csv(data["pairs"])
    past = pairs["offset_frame"] > 488
    assert summary["counts"]["pairs_clipped_to_tensor"] == int((past & (pairs["onset_frame"] < 488)).sum()) >= 1
    assert summary["counts"]["excluded_by_reason"] == {"span_outside_tensor": int((pairs["onset_frame"] >= 488).sum())}
    assert summary["counts"]["excluded_by_reason"]["span_outside_tensor"] >= 1


def test_fractional_offset_in_reference_mode_takes_the_frames_whose_centres_it_covers(tmp_path):
    """The tensor dump's -3.5 (torch pooling): frame k covers [8k - 3.5, 8k + 4.5), so on whole
    input frames it holds those whose centre t + 0.5 lies there, [8k - 4, 8k + 4)."""
    from tests.helpers.scores import upsampled_reference_scores
    from vgsalign.scores.instances import load_instances
    from vgsalign.scores.masks import reference_mask

    data = synthetic_dataset(tmp_path / "d", n_images=3, captions_per_image=2, pairs_per_caption=2,
                             n_frames=64, grid=4, image_size=(30, 40), seed=9)
    tensors, avt_of = _with_offset(data, tmp_path, -3.5)
    assert _run(data, tmp_path / "out", "--grid", "32", tensors=tensors) == 0
    table = pd.read_csv(tmp_path / "out" / "pair_scores.csv", dtype={"utt_id": str})
    mapping = json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"]["time_mapping"]
    assert mapping["input_frames_offset"] == -4.0 and "-3.5" in mapping["sources"]["input_frames_offset"]
    instances = load_instances(data["instances"])
    for _, pair in table.iterrows():
        mask = reference_mask(category_mask(instances.images[int(pair["image_id"])], int(pair["category_id"])),
                              32, 0.01)
        expected = upsampled_reference_scores(avt_of[pair["utt_id"]], int(pair["onset_frame"]),
                                              int(pair["offset_frame"]), mask, 512, "both", "object",
                                              input_frames_offset=-4)
        for score in SCORES:
            assert pair[score] == pytest.approx(expected[score], rel=1e-9, abs=1e-12), score


def test_input_frames_offset_exact_matches_the_supersampled_oracle(tmp_path):
    """A half-frame offset (exact mode only), against the supersampled oracle."""
    from tests.helpers.scores import upsampled_exact_scores
    from vgsalign.scores.instances import load_instances

    data = synthetic_dataset(tmp_path / "d", n_images=2, captions_per_image=2, pairs_per_caption=2,
                             n_frames=16, grid=4, image_size=(12, 16), seed=7)
    pairs = pd.read_csv(data["pairs"], dtype={"utt_id": str})
    pairs["onset_s"], pairs["offset_s"] = pairs["onset_s"].round(2), pairs["offset_s"].round(2)
    pairs.to_csv(data["pairs"], index=False)
    tensors, avt_of = _with_offset(data, tmp_path, -3.5)
    assert _run(data, tmp_path / "out", "--mode", "exact", "--softmax", "none", tensors=tensors) == 0
    table = pd.read_csv(tmp_path / "out" / "pair_scores.csv", dtype={"utt_id": str})
    assert len(table) >= 6
    instances = load_instances(data["instances"])
    for _, pair in table.iterrows():
        mask = category_mask(instances.images[int(pair["image_id"])], int(pair["category_id"]))
        # input frames from the tensor's start, in half frames: (pad + onset / hop + 3.5) * 2
        start = round((pair["pad_frames"] + pair["onset_s"] * 100 + 3.5) * 2)
        end = round((pair["pad_frames"] + pair["offset_s"] * 100 + 3.5) * 2)
        expected = upsampled_exact_scores(avt_of[pair["utt_id"]], start, end, 2, 64, mask, "none", "object")
        for score in SCORES:
            assert pair[score] == pytest.approx(expected[score], rel=1e-9, abs=1e-12), score


def test_original_random_baseline_is_the_upsampled_uniform_tensor_without_softmax(tmp_path):
    """random_baseline original: a uniform tensor at 512 input frames x grid x grid, no softmax,
    checked pair by pair on the fine grid; the model's own scores are unchanged."""
    from tests.helpers.scores import scores_on_fine_grid
    from vgsalign.scores.instances import load_instances
    from vgsalign.scores.masks import reference_mask
    from vgsalign.scores.worker import original_random_tensor

    data = synthetic_dataset(tmp_path / "d", n_images=3, captions_per_image=2, pairs_per_caption=2,
                             n_frames=16, grid=4, image_size=(30, 40), seed=3)
    common = ("--grid", "32", "--as-word-normalization", "image", "--seed", "4")
    assert _run(data, tmp_path / "native", *common) == 0
    assert _run(data, tmp_path / "original", *common, "--random-baseline", "original") == 0
    native = pd.read_csv(tmp_path / "native" / "pair_scores.csv", dtype={"utt_id": str})
    table = pd.read_csv(tmp_path / "original" / "pair_scores.csv", dtype={"utt_id": str})
    pd.testing.assert_frame_equal(table[list(SCORES)], native[list(SCORES)])
    random_columns = [f"random_{s}" for s in SCORES]
    assert (table[random_columns] - native[random_columns]).abs().to_numpy().max() > 1e-4
    instances = load_instances(data["instances"])
    fine = np.arange(512)
    for _, pair in table.iterrows():
        tensor = original_random_tensor(4, pair["utt_id"], 512, 32).reshape(512, 32, 32)
        prepared = {"s_as": tensor, "q_as": tensor, "s_gs": tensor, "q_gs": tensor}    # no softmax
        mask = reference_mask(category_mask(instances.images[int(pair["image_id"])], int(pair["category_id"])),
                              32, 0.01)
        word = (fine >= pair["onset_frame"]) & (fine < pair["offset_frame"])
        expected = scores_on_fine_grid(prepared, fine, np.arange(32), np.arange(32), word, mask, "image")
        for score in SCORES:
            assert pair[f"random_{score}"] == pytest.approx(expected[score], rel=1e-9), score
    # uniform noise at full resolution sits at chance
    assert (table["random_as_object"] - table["chance_as_object"]).abs().max() < 0.02
    summary = json.loads((tmp_path / "original" / "summary.json").read_text())
    assert summary["options"]["random_baseline"] == "original"
    assert "512 x 224 x 224" in summary["options"]["random_baseline_tensor"]


def test_original_random_baseline_needs_reference_mode(data, tmp_path, capsys):
    assert _run(data, tmp_path / "out", "--mode", "exact", "--random-baseline", "original") == 2
    assert "random_baseline" in capsys.readouterr().err


def test_frames_slice_must_agree_with_the_tensor_file(data, tmp_path, capsys):
    agreeing = json.dumps({"hop_s": 0.01, "max": 512, "padding": "start"})
    assert _run(data, tmp_path / "ok", "--frames", agreeing) == 0
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["inputs"]["time_mapping"]["sources"]["max_frames"] == "tensor file"
    assert _run(data, tmp_path / "a", "--frames", json.dumps({"max": 1024})) == 2
    assert "max_frames 1024" in capsys.readouterr().err
    assert _run(data, tmp_path / "b", "--frames", json.dumps({"hop": 0.01})) == 2
    assert "--frames" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_inputs_are_read_once_per_process_not_per_chunk(data, tmp_path, monkeypatch):
    """Twelve chunks: the instances are read once, each image's masks built once, the tensor
    file opened once, and each chunk reads only its own rows."""
    from vgsalign.scores import masks, plan, tensor_io
    from vgsalign.scores.plan import score_settings
    from vgsalign.scores.run import run_scores

    calls = {"instances": 0, "regions": [], "opens": 0, "rows": []}

    def counting(function, key, record=lambda *a, **k: None):
        def wrapped(*args, **kwargs):
            record(*args, **kwargs)
            if isinstance(calls[key], int):
                calls[key] += 1
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(plan, "load_instances", counting(plan.load_instances, "instances"))
    monkeypatch.setattr(masks, "build_image_regions", counting(
        masks.build_image_regions, "regions", lambda image, *a, **k: calls["regions"].append(image.image_id)))
    monkeypatch.setattr(tensor_io.TensorReader, "_open", counting(tensor_io.TensorReader._open, "opens"))
    monkeypatch.setattr(tensor_io.TensorReader, "read", counting(
        tensor_io.TensorReader.read, "rows", lambda self, rows: calls["rows"].append(len(rows))))
    run_scores(tensors=data["tensors"], pairs_csv=data["pairs"], instances_json=data["instances"],
               out_dir=tmp_path / "out", settings=score_settings(**SETTINGS), threads=1, chunk_utterances=2)
    assert calls["instances"] == 1 and calls["opens"] == 1
    assert sorted(calls["regions"]) == sorted(set(calls["regions"])) and len(calls["regions"]) == 8
    assert calls["rows"] == [2] * 12
