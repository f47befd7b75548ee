"""Step testdata-dataset: the tables it writes from the readers, and its command line."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

import tests.helpers.corpus as fx
import tests.helpers.testdata as h
from vgsalign.errors import InputError
from vgsalign.settings import settings_from_dict
from vgsalign.tables import read_table
from vgsalign.testdata import dataset


def run_step(tmp_path, slice_: dict, speech, coco_root, split="val2014"):
    return subprocess.run(
        ["vgsalign", "testdata-dataset", "--dataset", json.dumps(slice_), "--speech-root", str(speech),
         "--coco-root", str(coco_root), "--split", split, "--out-dir", str(tmp_path / "out"),
         "--report", str(tmp_path / "out/reports/dataset.json"), "--rejects", str(tmp_path / "out/rejects_dataset.csv")],
        capture_output=True, text=True)


def test_spokencoco_tables_hold_the_fixture_times(tmp_path):
    speech, grids = fx.spokencoco_corpus(tmp_path)
    coco_root = fx.coco_corpus(tmp_path)
    proc = run_step(tmp_path, {"source": "spokencoco", "alignments_root": str(grids)}, speech, coco_root,
                    split="train2014")
    assert proc.returncode == 0, proc.stderr
    words = read_table(tmp_path / "out/words.csv")
    utts = read_table(tmp_path / "out/utterances.csv")
    assert sorted(utts["image_id"]) == [9, 42]  # the restval image 42 is kept
    dog = words[words["word"] == "dog"].iloc[0]
    assert (dog["utt_id"], dog["word_index"], dog["onset_s"], dog["offset_s"]) == ("m1a2b3-3ABCDEF_9_101", 1, 0.27, 0.61)
    report = json.loads((tmp_path / "out/reports/dataset.json").read_text())
    assert report["captions_read"] == 3 and report["drop_reasons"] == {"no TextGrid alignment": 1}


def test_speechcoco_tables_leave_out_disfluencies(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    coco_root = tmp_path / "coco"
    h.write_instances(coco_root / "annotations/instances_val2014.json", images={108505: [(1, 0)], 298817: []})
    proc = run_step(tmp_path, {"source": "speechcoco", "alignments_root": None}, speech, coco_root)
    assert proc.returncode == 0, proc.stderr
    words = read_table(tmp_path / "out/words.csv")
    phil = words[words["utt_id"] == "108505_147972_Phil_Middle_0-9"]
    assert phil["word"].tolist() == ["Person", "using", "a", "slider", "phone"]
    assert phil["word_index"].tolist() == [0, 1, 2, 3, 4]
    assert phil["offset_s"].tolist() == pytest.approx([0.52, 0.90, 0.98, 1.80, 2.1255])


def test_cli_reports_bad_input_in_one_line(tmp_path):
    speech = tmp_path / "speech"
    h.write_caption(speech, "1_1_V_None_1-0", 1, [("a", 100)], ("SIL", 300), 1.0, timecode=None)
    h.write_instances(tmp_path / "coco/annotations/instances_val2014.json")
    proc = run_step(tmp_path, {"source": "speechcoco", "alignments_root": None}, speech, tmp_path / "coco")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("vgsalign testdata-dataset: error: ")
    assert "1_1_V_None_1-0.json: no `timecode` entry" in proc.stderr
    assert not (tmp_path / "out" / "words.csv").exists()


def test_spokencoco_needs_its_alignments():
    with pytest.raises(InputError, match="dataset.alignments_root"):
        settings_from_dict(dataset.DatasetSettings, {"source": "spokencoco"}, section="dataset")


def test_tables_refuse_a_repeated_utterance_id(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    settings = settings_from_dict(dataset.DatasetSettings, {"source": "speechcoco"}, section="dataset")
    coco_root = tmp_path / "coco"
    h.write_instances(coco_root / "annotations/instances_val2014.json", images={108505: [], 298817: []})
    result = dataset.read_split(settings, speech, coco_root, "val2014")
    utterances, words = dataset.tables(result, "val2014")
    assert isinstance(utterances, pd.DataFrame) and len(words) == 8
    result.utterances.append(result.utterances[0])
    with pytest.raises(InputError, match="occurs twice"):
        dataset.tables(result, "val2014")


def test_broken_files_are_skipped_and_counted_until_too_many(tmp_path):
    speech = fx.speechcoco_corpus(tmp_path)
    coco_root = tmp_path / "coco"
    h.write_instances(coco_root / "annotations/instances_val2014.json", images={108505: [(1, 0)], 298817: []})
    broken = speech / "val2014/json/1_1_V_None_1-0.json"
    broken.write_text("{not json")
    skip = {"source": "speechcoco", "on_error": "skip", "max_rejected_share": 0.5}
    proc = run_step(tmp_path, skip, speech, coco_root)
    assert proc.returncode == 0, proc.stderr
    rejects = read_table(tmp_path / "out/rejects_dataset.csv")
    assert rejects["file"].tolist() == [str(broken)] and rejects["problem"].str.startswith("unreadable caption JSON").all()
    report = json.loads((tmp_path / "out/reports/dataset.json").read_text())
    assert (report["captions_rejected"], report["utterances"]) == (1, 2)
    # 1 of 3 rejected is more than a share of 0.25: the step stops with one line naming the table
    too_many = run_step(tmp_path, {**skip, "max_rejected_share": 0.25}, speech, coco_root)
    assert too_many.returncode == 2
    line = too_many.stderr.strip().splitlines()[-1]  # after the progress lines
    assert line.startswith("vgsalign testdata-dataset: error: ") and "1 of 3 caption files rejected (33.33%)" in line
    assert "rejects_dataset.csv" in line and str(broken) in line
    # stop (the default) names the broken file
    stop = run_step(tmp_path, {"source": "speechcoco"}, speech, coco_root)
    assert stop.returncode == 2 and f"{broken}: unreadable caption JSON" in stop.stderr


def test_reading_over_processes_gives_the_same_tables(tmp_path):
    """Above one task's worth of caption files the step reads SPEECH-COCO over worker
    processes: the tables, the rejects and the report are the same as one process gives, in
    file order, and with on_error stop the broken file is still the one named."""
    speech = fx.speechcoco_corpus(tmp_path)
    coco_root = tmp_path / "coco"
    h.write_instances(coco_root / "annotations/instances_val2014.json", images={108505: [(1, 0)], 298817: []})
    json_dir = speech / "val2014/json"
    originals = sorted(json_dir.glob("*.json"))
    for k in range(2 * dataset.FILES_PER_TASK + 50):
        source = originals[k % len(originals)]
        (json_dir / f"{source.stem}{k:05d}.json").write_text(source.read_text())
    broken = json_dir / f"{originals[0].stem}00777.json"
    broken.write_text("{not json")
    skip = settings_from_dict(dataset.DatasetSettings, {"source": "speechcoco", "on_error": "skip",
                                                        "max_rejected_share": 0.5}, section="dataset")
    outputs = {}
    for threads in (1, 2):
        out = tmp_path / f"out{threads}"
        report = dataset.build(skip, speech, coco_root, "val2014", out, out / "dataset.json", out / "rejects.csv",
                               threads=threads)
        outputs[threads] = ({name: (out / name).read_bytes() for name in ("utterances.csv", "words.csv", "rejects.csv")},
                            {k: v for k, v in report.items() if k != "rejects"})
    assert outputs[1] == outputs[2]
    assert outputs[2][1]["captions_rejected"] == 1 and outputs[2][1]["utterances"] > 1000
    stop = settings_from_dict(dataset.DatasetSettings, {"source": "speechcoco"}, section="dataset")
    with pytest.raises(InputError, match="unreadable caption JSON") as err:
        dataset.build(stop, speech, coco_root, "val2014", tmp_path / "stop", tmp_path / "stop/r.json",
                      tmp_path / "stop/rejects.csv", threads=2)
    assert err.value.where == str(broken)
