"""COCO category masks: pycocotools rasterising, the bilinear resize, cell weights."""

import json

import numpy as np
import pytest
from PIL import Image
from tests.helpers.scores import polygon_rect, rle_of, write_instances

from vgsalign.errors import InputError
from vgsalign.scores.instances import ImageAnnotations, category_mask, load_instances
from vgsalign.scores.masks import CellGrid, bilinear_resize, build_image_regions, reference_mask


def test_union_of_noncrowd_polygon_and_rle_instances(tmp_path):
    h, w = 40, 50
    rle_mask = np.zeros((h, w), dtype=bool)
    rle_mask[30:38, 5:20] = True
    crowd = np.zeros((h, w), dtype=bool)
    crowd[:, 45:] = True
    path = write_instances(
        tmp_path / "instances.json",
        images=[{"id": 7, "height": h, "width": w}],
        annotations=[
            {"image_id": 7, "category_id": 18, "segmentation": polygon_rect(2, 3, 12, 13)},
            {"image_id": 7, "category_id": 18, "segmentation": rle_of(rle_mask)},
            {"image_id": 7, "category_id": 18, "segmentation": rle_of(crowd), "iscrowd": 1},
            {"image_id": 7, "category_id": 1, "segmentation": polygon_rect(20, 0, 30, 10)},
        ],
        categories=[(1, "person"), (18, "dog")],
    )
    # an uncompressed RLE too (as COCO stores crowd regions)
    data = json.loads(path.read_text())
    counts = []
    flat = np.zeros((h, w), dtype=bool)
    flat[0:2, 40:44] = True
    column_major = flat.T.ravel()
    value, run = False, 0
    for pixel in column_major:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    data["annotations"].append({"id": 99, "image_id": 7, "category_id": 18, "iscrowd": 0,
                                "segmentation": {"size": [h, w], "counts": counts}})
    path.write_text(json.dumps(data))

    instances = load_instances(path)
    assert instances.category_ids == {"person": 1, "dog": 18}
    image = instances.images[7]
    assert sorted(image.segmentations) == [1, 18]
    dog = category_mask(image, 18)
    expected = rle_mask | flat
    polygon = np.zeros((h, w), dtype=bool)
    polygon[3:14, 2:13] = True                      # pycocotools rasterises the closed polygon
    assert dog.shape == (h, w)
    assert np.array_equal(dog & ~polygon, expected & ~polygon)
    assert dog[5:12, 4:11].all()
    assert not dog[:, 45:].any()                    # the crowd instance is left out
    assert category_mask(image, 62).sum() == 0


def test_load_instances_reports_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_instances(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_instances(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="not a COCO instances file"):
        load_instances(tmp_path / "other.json")


def test_bilinear_upscale_matches_pillow():
    """Half-pixel-centre bilinear; for upscaling Pillow does the same (no antialias then)."""
    rng = np.random.default_rng(0)
    image = rng.random((9, 13)).astype(np.float32)
    ours = bilinear_resize(image, 31, 40)
    pillow = np.asarray(Image.fromarray(image, mode="F").resize((40, 31), Image.BILINEAR))
    np.testing.assert_allclose(ours, pillow, atol=1e-5)


def test_bilinear_downscale_samples_between_two_pixels():
    image = np.zeros((4, 4))
    image[1, :] = 1.0
    out = bilinear_resize(image, 2, 2)            # source rows 0.5 and 2.5
    np.testing.assert_allclose(out[:, 0], [0.5, 0.0])
    assert np.allclose(bilinear_resize(np.ones((480, 640)), 224, 224), 1.0)


def test_small_object_vanishes_at_224():
    mask = np.zeros((2000, 2000), dtype=bool)
    mask[1000, 1000] = True                         # one pixel of 2000 x 2000
    assert not reference_mask(mask, 224, 0.01).any()
    mask[995:1005, 995:1005] = True
    assert reference_mask(mask, 224, 0.01).any()


@pytest.mark.parametrize("cells,grid", [((14, 14), 224), ((5, 9), 32), ((7, 3), 7)])
def test_reference_cell_weights_count_repeated_pixels(cells, grid):
    h, w = cells
    rng = np.random.default_rng(1)
    masks = rng.random((3, grid, grid)) < 0.3
    weights = CellGrid.reference(h, w, grid).weights(masks)
    rows, cols = (np.arange(grid) * h) // grid, (np.arange(grid) * w) // grid
    for k in range(3):
        expected = np.zeros((h, w))
        np.add.at(expected, (rows[:, None].repeat(grid, 1), cols[None, :].repeat(grid, 0)), masks[k])
        np.testing.assert_array_equal(weights[:, k], expected.ravel())
    totals = CellGrid.reference(h, w, grid).totals()
    assert totals.sum() == grid * grid
    if grid % h == 0 and grid % w == 0:
        assert np.all(totals == (grid // h) * (grid // w))


def test_exact_cell_weights_are_fractional_areas():
    mask = np.zeros((5, 7), dtype=bool)
    mask[1, 2] = True                               # pixel [1, 2) x [2, 3)
    weights = CellGrid.exact(2, 2, 5, 7).weights(mask[None]).reshape(2, 2)
    # rows split at 2.5, columns at 3.5: the pixel lies in cell (0, 0) entirely
    assert weights[0, 0] == pytest.approx(1.0) and weights.sum() == pytest.approx(1.0)
    mask = np.ones((5, 7), dtype=bool)
    weights = CellGrid.exact(2, 2, 5, 7).weights(mask[None]).reshape(2, 2)
    np.testing.assert_allclose(weights, 2.5 * 3.5)
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True                               # the centre pixel in a 2 x 2 grid: a quarter each
    np.testing.assert_allclose(CellGrid.exact(2, 2, 3, 3).weights(mask[None]).ravel(), 0.25)


def test_regions_report_vanished_mask():
    from vgsalign.scores.masks import ImageAnnotations

    tiny = np.zeros((2240, 2240), dtype=bool)
    tiny[1000, 1000] = True                         # between the bilinear sample points at 224
    image = ImageAnnotations(1, 2240, 2240, {1: [rle_of(tiny)], 18: [polygon_rect(100, 100, 900, 900)]})
    regions = build_image_regions(image, [1, 18], "reference", 14, 14, 224, 0.01)
    assert regions.vanished(1) and not regions.vanished(18)
    exact = build_image_regions(image, [1, 18], "exact", 14, 14)
    assert not exact.vanished(1)


@pytest.mark.parametrize("seed", range(6))
def test_reference_mask_equals_full_resize(seed):
    """Resizing only the object's box gives the same mask as resizing the whole image."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 700, size=2)
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    mask[y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] = True
    mask &= rng.random((h, w)) < 0.9
    mask = np.asfortranarray(mask) if seed % 2 else mask
    grid = int(rng.choice([56, 224]))
    for threshold in (0.01, 0.5):
        expected = bilinear_resize(mask, grid, grid) >= threshold
        np.testing.assert_array_equal(reference_mask(mask, grid, threshold), expected)


# ---------------------------------------------------------------- annotations checked as they are read


def _instances_with(tmp_path, bad: dict, h: int = 40, w: int = 50):
    """An image with one good dog polygon and one bad annotation (id 2) of it."""
    good = {"image_id": 7, "category_id": 18, "segmentation": polygon_rect(2, 3, 12, 13)}
    return write_instances(tmp_path / "instances.json", [{"id": 7, "height": h, "width": w}],
                           [good, {"image_id": 7, "category_id": 18, **bad}], [(1, "person"), (18, "dog")])


def _rle_sized(h: int, w: int) -> dict:
    mask = np.zeros((h, w), dtype=bool)
    mask[5:15, 5:25] = True
    return rle_of(mask)


BAD_ANNOTATIONS = {
    "rle_larger": ({"segmentation": _rle_sized(80, 100)}, "rle_size_mismatch", "RLE size [80, 100]"),
    "rle_transposed": ({"segmentation": _rle_sized(50, 40)}, "rle_size_mismatch", "(transposed)"),
    "uncompressed_rle_short": ({"segmentation": {"size": [40, 50], "counts": [10, 20, 30]}}, "rle_counts",
                               "sum 60"),
    "empty_polygons": ({"segmentation": []}, "empty_segmentation", "empty segmentation"),
    "four_coordinates": ({"segmentation": [[1, 1, 9, 9]]}, "degenerate_polygon", "4 coordinates"),
    "zero_area": ({"segmentation": [[1, 1, 5, 5, 9, 9]]}, "degenerate_polygon", "zero area"),
    "unknown_category": ({"category_id": 999, "segmentation": polygon_rect(1, 1, 5, 5)}, "unknown_category",
                         "unknown category_id 999"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_one_line_or_skipped_and_counted(tmp_path, case):
    bad, kind, text = BAD_ANNOTATIONS[case]
    path = _instances_with(tmp_path, bad)
    with pytest.raises(InputError) as caught:
        load_instances(path)
    message = str(caught.value)
    assert str(path) in message and "annotation 2 (image 7)" in message and text in message
    skipped = load_instances(path, on_error="skip")
    assert skipped.skipped == {kind: 1}
    assert "annotation 2" in skipped.skipped_examples[0]
    # what is left is exactly the good polygon: never a silently different mask
    expected = category_mask(ImageAnnotations(7, 40, 50, {18: [polygon_rect(2, 3, 12, 13)]}), 18)
    assert expected.sum() >= 100
    assert np.array_equal(category_mask(skipped.images[7], 18), expected)


def test_crowd_and_other_images_are_not_checked(tmp_path):
    """Only the non-crowd annotations of the images asked for are rasterised, so only they are checked."""
    path = write_instances(tmp_path / "instances.json",
                           [{"id": 7, "height": 40, "width": 50}, {"id": 8, "height": 40, "width": 50}],
                           [{"image_id": 7, "category_id": 18, "segmentation": polygon_rect(2, 3, 12, 13)},
                            {"image_id": 7, "category_id": 18, "segmentation": _rle_sized(80, 100), "iscrowd": 1},
                            {"image_id": 8, "category_id": 18, "segmentation": []}],
                           [(18, "dog")])
    assert sorted(load_instances(path, [7]).images) == [7]
    with pytest.raises(InputError, match="annotation 3 \\(image 8\\)"):
        load_instances(path)


def test_polygons_are_kept_as_arrays_with_the_same_masks(tmp_path):
    """load_instances keeps each polygon as one float64 array and leaves out the annotations
    of images not asked for while parsing; the masks are those of the file's lists."""
    from pycocotools import mask as mask_utils

    polygon = [10.5, 10.0, 60.0, 12.0, 55.25, 40.0, 12.0, 38.0]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "height": 48, "width": 64}, {"id": 2, "height": 48, "width": 64}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": [polygon]},
                        {"id": 2, "image_id": 2, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 2]]}]}))
    instances = load_instances(path, [1])    # image 2's degenerate polygon is never looked at
    ((kept,),) = instances.images[1].segmentations[3]  # one annotation of one polygon
    assert isinstance(kept, np.ndarray) and kept.dtype == np.float64 and kept.tolist() == polygon
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], 48, 64))).astype(bool)
    assert expected.any() and np.array_equal(category_mask(instances.images[1], 3), expected)
    with pytest.raises(InputError, match="degenerate polygon"):
        load_instances(path)


def test_streamed_store_gives_pycocotools_masks_in_file_order(tmp_path):
    """The instances are streamed into an ImageStore (segmentations in a temporary file):
    read back, every image's category masks equal pycocotools' own union of its non-crowd
    annotations, the annotations keep file order, and `annotated` agrees with the masks,
    with categories last in the file as COCO writes them."""
    from pycocotools.coco import COCO

    rng = np.random.default_rng(3)
    images = [{"id": i, "height": 30 + i % 7, "width": 40 + i % 5, "file_name": f"{i}.jpg"}
              for i in map(int, rng.permutation(np.arange(1, 41)))]
    annotations = []
    for n in range(300):
        image = images[int(rng.integers(len(images)))]
        x, y = map(int, rng.integers(0, 20, size=2))
        segm = polygon_rect(x, y, x + 8, y + 9)
        if n % 3 == 0:
            mask = np.zeros((image["height"], image["width"]), dtype=bool)
            mask[y:y + 5, x:x + 6] = True
            segm = rle_of(mask)
        annotations.append({"id": n + 1, "image_id": image["id"], "category_id": int(rng.choice([1, 5, 9])),
                            "iscrowd": int(n % 11 == 0), "segmentation": segm, "area": 1.0,
                            "bbox": [0, 0, 1, 1]})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}, {"id": 5, "name": "b"},
                                               {"id": 9, "name": "c"}]}))
    coco = COCO(str(path))
    wanted = [im["id"] for im in images[::2]]
    instances = load_instances(path, wanted)
    try:
        assert sorted(instances.images) == sorted(wanted)
        image_ids, category_ids = np.repeat(wanted, 3), np.tile([1, 5, 9], len(wanted))
        annotated = instances.annotated(image_ids, category_ids)
        for image_id, category_id, has in zip(image_ids, category_ids, annotated):
            image = instances.images[image_id]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[int(image_id)], catIds=[int(category_id)], iscrowd=False))
            assert bool(has) == bool(anns)
            assert len(image.segmentations.get(int(category_id), [])) == len(anns)
            expected = np.zeros((image.height, image.width), dtype=bool)
            for ann in anns:
                expected |= coco.annToMask(ann).astype(bool)
            assert np.array_equal(category_mask(image, int(category_id)), expected)
        def as_plain(segm):
            return segm if isinstance(segm, dict) else [list(map(float, p)) for p in segm]

        for image_id in wanted:
            kept = instances.images[image_id].segmentations
            for category_id in (1, 5, 9):
                in_file = [as_plain(a["segmentation"]) for a in annotations if a["image_id"] == image_id
                           and a["category_id"] == category_id and not a["iscrowd"]]
                assert [as_plain(segm) for segm in kept.get(category_id, [])] == in_file
    finally:
        instances.images.close()
