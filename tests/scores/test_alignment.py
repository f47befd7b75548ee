"""Score math: native-resolution scores against a plain upsampled implementation, the
identities of docs/design.md, the oracle and uniform tensors, and confusion row sums."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.scores import SCORES, upsampled_exact_scores, upsampled_reference_scores

from vgsalign.scores.alignment import (
    chance_levels, exact_frame_totals, exact_word_weights, prepare_tensor, reference_frame_bounds,
    reference_frame_totals, reference_input_frames, reference_word_weights, score_regions,
)
from vgsalign.scores.masks import BACKGROUND, OTHER, CellGrid, ImageAnnotations, build_image_regions

SOFTMAX = st.sampled_from(["both", "as", "gs", "none"])
NORMALIZATION = st.sampled_from(["object", "image"])
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def native_reference(avt, onset, offset, mask, n_input_frames, softmax, normalization):
    t, h, w = avt.shape
    bounds = reference_frame_bounds(t, n_input_frames)
    grid = CellGrid.reference(h, w, mask.shape[0]) if mask.shape[0] == mask.shape[1] else None
    scores = score_regions(
        prepare_tensor(avt.reshape(t, h * w), softmax),
        reference_word_weights([onset], [offset], bounds), reference_frame_totals(bounds),
        grid.weights(mask[None]), grid.totals(), normalization,
    )
    return {k: float(v[0, 0]) for k, v in scores.items()}


def native_exact(avt, start, end, frames_per_tensor_frame, mask, softmax, normalization):
    t, h, w = avt.shape
    grid = CellGrid.exact(h, w, mask.shape[0], mask.shape[1])
    scores = score_regions(
        prepare_tensor(avt.reshape(t, h * w), softmax),
        exact_word_weights([start], [end], t, frames_per_tensor_frame),
        exact_frame_totals(t, frames_per_tensor_frame),
        grid.weights(mask[None]), grid.totals(), normalization,
    )
    return {k: float(v[0, 0]) for k, v in scores.items()}


@st.composite
def reference_case(draw):
    t = draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    n_input = draw(st.integers(t, 4 * t))               # any whole length: r = L / T may be fractional
    grid = draw(st.integers(max(h, w), 40))
    onset = draw(st.integers(0, n_input - 1))
    offset = draw(st.integers(onset + 1, n_input))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    avt = rng.normal(scale=draw(st.sampled_from([0.5, 3.0])), size=(t, h, w))
    mask = rng.random((grid, grid)) < draw(st.sampled_from([0.05, 0.3, 0.8]))
    mask[rng.integers(grid), rng.integers(grid)] = True
    return avt, onset, offset, mask, n_input


@st.composite
def exact_case(draw):
    t = draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    img_h, img_w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    subframes = draw(st.sampled_from([1, 2, 4]))         # fine frames per input frame
    fine_per_tensor_frame = draw(st.integers(1, 8))     # r = this / subframes input frames
    n_fine = t * fine_per_tensor_frame
    start = draw(st.integers(0, n_fine - 1))
    end = draw(st.integers(start + 1, n_fine))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    avt = rng.normal(scale=2.0, size=(t, h, w))
    mask = rng.random((img_h, img_w)) < 0.4
    mask[rng.integers(img_h), rng.integers(img_w)] = True
    return avt, start, end, subframes, fine_per_tensor_frame, mask


@HYPOTHESIS
@given(case=reference_case(), softmax=SOFTMAX, normalization=NORMALIZATION)
def test_reference_native_equals_upsampled(case, softmax, normalization):
    avt, onset, offset, mask, n_input = case
    expected = upsampled_reference_scores(avt, onset, offset, mask, n_input, softmax, normalization)
    got = native_reference(avt, onset, offset, mask, n_input, softmax, normalization)
    for score in SCORES:
        assert got[score] == pytest.approx(expected[score], rel=1e-9, abs=1e-12), score


@HYPOTHESIS
@given(case=exact_case(), softmax=SOFTMAX, normalization=NORMALIZATION)
def test_exact_native_equals_supersampled(case, softmax, normalization):
    avt, start, end, subframes, fine_per_frame, mask = case
    expected = upsampled_exact_scores(avt, start, end, subframes, fine_per_frame, mask, softmax, normalization)
    got = native_exact(avt, start / subframes, end / subframes, fine_per_frame / subframes, mask,
                       softmax, normalization)
    for score in SCORES:
        assert got[score] == pytest.approx(expected[score], rel=1e-9, abs=1e-12), score


def test_reference_at_full_size_224():
    """The original grid: 64 x 14 x 14 tensor, 512 input frames, 224 x 224 mask."""
    rng = np.random.default_rng(3)
    avt = rng.normal(size=(64, 14, 14))
    mask = np.zeros((224, 224), dtype=bool)
    mask[37:150, 20:99] = True
    for softmax in ("both", "none"):
        for normalization in ("object", "image"):
            expected = upsampled_reference_scores(avt, 203, 251, mask, 512, softmax, normalization)
            got = native_reference(avt, 203, 251, mask, 512, softmax, normalization)
            for score in SCORES:
                assert got[score] == pytest.approx(expected[score], rel=1e-10)


@HYPOTHESIS
@given(case=reference_case(), normalization=NORMALIZATION)
def test_identities_with_softmax(case, normalization):
    """Spatial softmax: GS_object == AS_object (cells of equal size); temporal softmax:
    GS_word == AS_word (object norm), and image norm == that x mask share."""
    avt, onset, offset, mask, n_input = case
    t, h, w = avt.shape
    grid = h * w * 2                                    # divisible by H and W: cells of equal size
    mask = np.resize(mask, (grid, grid))
    mask[0, 0] = True
    n_input = t * max(1, n_input // t)                  # whole r: frames of equal length
    onset, offset = min(onset, n_input - 1), min(max(offset, onset + 1), n_input)
    offset = max(offset, onset + 1)
    by_norm = {norm: native_reference(avt, onset, offset, mask, n_input, "both", norm) for norm in ("object", "image")}
    got = by_norm[normalization]
    assert got["gs_object"] == pytest.approx(got["as_object"], rel=1e-10)
    assert got["gs_word"] == pytest.approx(by_norm["object"]["as_word"], rel=1e-10)
    share = mask.sum() / mask.size
    assert by_norm["image"]["as_word"] == pytest.approx(by_norm["object"]["as_word"] * share, rel=1e-10)


@HYPOTHESIS
@given(case=exact_case())
def test_identities_exact_mode_any_resolution(case):
    avt, start, end, subframes, fine_per_frame, mask = case
    r = fine_per_frame / subframes
    obj = native_exact(avt, start / subframes, end / subframes, r, mask, "both", "object")
    img = native_exact(avt, start / subframes, end / subframes, r, mask, "both", "image")
    assert obj["gs_object"] == pytest.approx(obj["as_object"], rel=1e-10)
    assert obj["gs_word"] == pytest.approx(obj["as_word"], rel=1e-10)
    assert img["as_word"] == pytest.approx(obj["as_word"] * mask.mean(), rel=1e-10)


def test_identities_need_the_softmax():
    """Without softmax the families differ (so the identity tests are not vacuous)."""
    rng = np.random.default_rng(0)
    avt = np.abs(rng.normal(size=(8, 4, 4))) * rng.integers(1, 5, size=(8, 1, 1))
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:9, 4:13] = True
    got = native_reference(avt, 10, 37, mask, 64, "none", "object")
    assert abs(got["gs_object"] - got["as_object"]) > 1e-3
    assert abs(got["gs_word"] - got["as_word"]) > 1e-3
    only_gs = native_reference(avt, 10, 37, mask, 64, "gs", "object")
    both = native_reference(avt, 10, 37, mask, 64, "both", "object")
    assert only_gs["gs_object"] == pytest.approx(both["gs_object"])
    assert only_gs["as_object"] == pytest.approx(got["as_object"])


@pytest.mark.parametrize("softmax", ["both", "none"])
@pytest.mark.parametrize("mode", ["reference", "exact"])
def test_oracle_tensor_scores_one(softmax, mode):
    """All attention on the object's cells during the word: every score is 1."""
    t, h, w = 16, 7, 7
    avt = np.full((t, h, w), -40.0 if softmax == "both" else 0.0)
    avt[4:9, 2:5, 1:4] = 40.0
    if mode == "reference":
        mask = np.zeros((224, 224), dtype=bool)
        mask[64:160, 32:128] = True                     # exactly cells rows 2-4, cols 1-3
        got = native_reference(avt, 4 * 32, 9 * 32, mask, 512, softmax, "object")
    else:
        mask = np.zeros((70, 91), dtype=bool)
        mask[20:50, 13:52] = True                       # cells of 10 x 13 pixels
        got = native_exact(avt, 4 * 8.0, 9 * 8.0, 8.0, mask, softmax, "object")
    for score in SCORES:
        assert got[score] == pytest.approx(1.0, abs=1e-12), score


@pytest.mark.parametrize("softmax", ["both", "as", "gs", "none"])
@pytest.mark.parametrize("normalization", ["object", "image"])
def test_uniform_tensor_scores_chance(softmax, normalization):
    rng = np.random.default_rng(1)
    mask = rng.random((224, 224)) < 0.2
    onset, offset = 100, 173
    got = native_reference(np.full((64, 13, 9), 0.7), onset, offset, mask, 512, softmax, normalization)
    chance = chance_levels(mask.mean(), (offset - onset) / 512, normalization)
    for score in SCORES:
        assert got[score] == pytest.approx(float(chance[score]), rel=1e-12), score
    exact_mask = rng.random((33, 50)) < 0.3
    got = native_exact(np.full((10, 6, 6), 2.0), 13.25, 47.5, 5.0, exact_mask, softmax, normalization)
    chance = chance_levels(exact_mask.mean(), (47.5 - 13.25) / 50.0, normalization)
    for score in SCORES:
        assert got[score] == pytest.approx(float(chance[score]), rel=1e-12), score


def test_zero_attention_counts_as_zero_share():
    avt = -np.ones((4, 3, 3))
    mask = np.ones((6, 6), dtype=bool)
    got = native_reference(avt, 0, 8, mask, 16, "none", "object")
    assert all(got[s] == 0.0 for s in SCORES)
    assert all(np.isfinite(list(got.values())))


def test_reference_input_frames_must_be_whole():
    assert reference_input_frames(64, 8.0) == 512
    assert reference_input_frames(100, 5.12) == 512
    with pytest.raises(ValueError):
        reference_input_frames(3, 1.5)


def test_reference_word_weights_count_input_frames():
    bounds = reference_frame_bounds(64, 512)
    assert np.array_equal(bounds, np.arange(65) * 8)
    weights = reference_word_weights([5, 0], [20, 512], bounds)
    assert weights[0, :3].tolist() == [3.0, 8.0, 4.0] and weights[0].sum() == 15
    assert np.all(weights[1] == 8.0)
    odd = reference_frame_bounds(3, 10)                 # frames of 4, 3, 3 input frames
    assert reference_frame_totals(odd).tolist() == [4.0, 3.0, 3.0]


# ---------------------------------------------------------------- confusion regions


def _image_with_objects():
    """A 60 x 80 image: a person, a dog overlapping it, a chair apart, a cat overlapping the chair and the dog."""
    image = ImageAnnotations(image_id=5, height=60, width=80)
    image.segmentations = {
        1: [[[10, 5, 40, 5, 40, 50, 10, 50]]],          # person
        18: [[[30, 30, 60, 30, 60, 55, 30, 55]]],       # dog (overlaps person)
        62: [[[65, 2, 78, 2, 78, 20, 65, 20]]],         # chair (apart)
    }
    return image


@pytest.mark.parametrize("mode", ["reference", "exact"])
def test_confusion_rows_sum(mode):
    image = _image_with_objects()
    regions = build_image_regions(image, [1, 18, 62], mode, 7, 7, grid=56, mask_threshold=0.01)
    rng = np.random.default_rng(2)
    avt = rng.normal(size=(12, 49))
    weights = exact_word_weights([3.0, 10.5], [20.0, 41.0], 12, 4.0)
    totals = exact_frame_totals(12, 4.0)
    for normalization in ("object", "image"):
        scores = score_regions(prepare_tensor(avt, "none"), weights, totals, regions.weights, regions.cell_totals,
                               normalization)
        for category in (1, 18, 62):
            own = regions.columns[(category, category)]
            other = regions.columns[(category, OTHER)]
            background = regions.columns[(category, BACKGROUND)]
            others = [regions.columns[(category, d)] for d in regions.annotated if d != category]
            for score in ("as_object", "gs_object"):
                row = scores[score]
                # own + all other categories + background: the whole image
                np.testing.assert_allclose(row[:, own] + row[:, other] + row[:, background], 1.0, rtol=1e-12)
                # the other categories, each minus own: sum >= their union, equal where they do not overlap
                assert np.all(row[:, others].sum(axis=1) >= row[:, other] - 1e-12)
                if category == 1:                          # dog and chair do not overlap
                    np.testing.assert_allclose(row[:, others].sum(axis=1), row[:, other], rtol=1e-12)
            if normalization == "image":                   # AS_word / image: additive over a partition of the image
                whole = score_regions(prepare_tensor(avt, "none"), weights, totals,
                                      regions.cell_totals[:, None], regions.cell_totals, "image")["as_word"][:, 0]
                row = scores["as_word"]
                np.testing.assert_allclose(row[:, own] + row[:, other] + row[:, background], whole, rtol=1e-12)


def test_regions_own_mask_and_background():
    image = _image_with_objects()
    regions = build_image_regions(image, [62], "exact", 6, 8)
    area = regions.weights.sum(axis=0)
    assert regions.annotated == (1, 18, 62)
    assert regions.mask_share[62] == pytest.approx(area[regions.own_column(62)] / (60 * 80))
    assert regions.weights[:, regions.columns[(62, BACKGROUND)]].sum() + sum(
        area[regions.columns[(62, c)]] for c in (62, OTHER)) == pytest.approx(60 * 80)


def test_batch_of_utterances_equals_one_at_a_time():
    """Scoring an image's utterances together gives each pair the numbers it gets alone."""
    rng = np.random.default_rng(4)
    t, h, w = 16, 5, 6
    tensors = rng.normal(size=(3, t, h * w))
    grid = CellGrid.reference(h, w, 60)
    masks = rng.random((2, 60, 60)) < 0.3
    regions, totals = grid.weights(masks), grid.totals()
    bounds = reference_frame_bounds(t, 128)
    onsets, offsets = np.array([3, 40, 7, 100, 0]), np.array([20, 77, 8, 128, 128])
    utterance = np.array([0, 0, 1, 2, 2])
    weights = reference_word_weights(onsets, offsets, bounds)
    for softmax in ("both", "none"):
        batch = score_regions(prepare_tensor(tensors, softmax), weights, reference_frame_totals(bounds), regions,
                              totals, "object", word_utterance=utterance)
        for j in range(len(onsets)):
            alone = score_regions(prepare_tensor(tensors[utterance[j]], softmax), weights[j:j + 1],
                                  reference_frame_totals(bounds), regions, totals, "object")
            for score in SCORES:
                np.testing.assert_allclose(batch[score][j], alone[score][0], rtol=1e-12, atol=1e-15)
