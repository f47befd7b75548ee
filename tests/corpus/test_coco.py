"""Image ids of an instances file: read from its `images` list, wherever it stands."""

from __future__ import annotations

import json

import pytest

from vgsalign.corpus import coco
from vgsalign.errors import InputError


def instances(images_first: bool) -> dict:
    images = [{"id": 9, "file_name": "a.jpg", "height": 4, "width": 4}, {"id": 42, "file_name": "b.jpg", "height": 4, "width": 4}]
    annotations = [{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0.5, 0, 1, 1], "area": 1.0, "iscrowd": 0,
                    "segmentation": [[0.5, 0, 1, 0, 1, 1]]}]
    parts = [("images", images), ("annotations", annotations)]
    return {"info": {}, **dict(parts if images_first else parts[::-1]), "categories": [{"id": 1, "name": "dog"}]}


@pytest.mark.parametrize("images_first", [True, False])
def test_image_ids_are_those_pycocotools_lists(tmp_path, images_first):
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(instances(images_first)))
    assert coco.coco_image_ids(path) == {9, 42} == set(coco.open_coco(path).getImgIds())


@pytest.mark.parametrize("text, problem", [
    ('{"images": [{"id": 1}, {"file_name": "x.jpg"}]}', "an image entry has no integer `id`"),
    ('{"annotations": []}', "no `images` list"),
    ('[1, 2]', "no `images` list"),
    ('{"info": {}, "images": [{"id": 1}', "not valid JSON"),
])
def test_bad_instances_files_are_named(tmp_path, text, problem):
    path = tmp_path / "instances_val2014.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        coco.coco_image_ids(path)
    assert err.value.where == str(path) or str(path) in str(err.value)
    with pytest.raises(InputError, match="instances file not found"):
        coco.coco_image_ids(tmp_path / "none.json")
