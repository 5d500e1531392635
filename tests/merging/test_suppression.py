"""NMS, soft-NMS and NMM: hand-checked cases, naive references and order independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilerunner.errors import InvalidRequestError, UnknownNameError
from tilerunner.merging import Merged, MergeParams, merge

A = [0.0, 0.0, 10.0, 10.0]
HALF_A = [0.0, 0.0, 10.0, 5.0]  # IoU with A is exactly 0.5, IoS is 1


def run(
    boxes: list[list[float]], scores: list[float], labels: list[int] | None = None, **kw: object
) -> Merged:
    labels = [0] * len(boxes) if labels is None else labels
    return merge(np.array(boxes), np.array(scores), np.array(labels), MergeParams(**kw))  # type: ignore[arg-type]


# --- hand cases -------------------------------------------------------------------------------


def test_suppression_is_strictly_above_the_threshold() -> None:
    assert run([A, HALF_A], [0.9, 0.8], threshold=0.5).source.tolist() == [0, 1]
    assert run([A, HALF_A], [0.9, 0.8], threshold=0.49).source.tolist() == [0]


def test_touching_boxes_never_overlap_even_at_threshold_zero() -> None:
    assert len(run([A, [10.0, 0.0, 20.0, 10.0]], [0.9, 0.8], threshold=0.0)) == 2
    assert len(run([A, [9.0, 0.0, 20.0, 10.0]], [0.9, 0.8], threshold=0.0)) == 1


def test_class_aware_keeps_different_labels_and_agnostic_does_not() -> None:
    assert len(run([A, A], [0.9, 0.8], [1, 2])) == 2
    merged = run([A, A], [0.9, 0.8], [1, 2], class_agnostic=True)
    assert merged.labels.tolist() == [1] and merged.source.tolist() == [0]


def test_ios_catches_a_box_inside_a_bigger_one_where_iou_does_not() -> None:
    boxes = [A, [2.0, 2.0, 6.0, 6.0]]  # IoU 0.16, IoS 1.0
    assert len(run(boxes, [0.9, 0.8], metric="iou")) == 2
    assert run(boxes, [0.9, 0.8], metric="ios").source.tolist() == [0]


def test_min_score_filters_first_and_source_indexes_the_input() -> None:
    merged = run(
        [[50.0, 50.0, 60.0, 60.0], A, HALF_A], [0.2, 0.3, 0.9], min_score=0.25, threshold=0.3
    )
    assert merged.source.tolist() == [2]
    assert merged.scores.tolist() == [0.9]


def test_none_only_filters_and_sorts() -> None:
    merged = run([A, A, HALF_A], [0.5, 0.7, 0.7], method="none")
    assert merged.source.tolist() == [2, 1, 0]  # score desc, then x0, y0, x1, y1 (y1 5 < 10)
    assert merged.boxes.dtype == np.float64 and merged.labels.dtype == np.int64


def test_nmm_grows_the_kept_box_and_absorbs_each_box_once() -> None:
    boxes = [A, [2.0, 0.0, 12.0, 10.0], [4.0, 0.0, 14.0, 10.0], [30.0, 30.0, 40.0, 40.0]]
    # A-B IoU 0.67 and D-B 0.67, but A-D 0.43: A absorbs B first, so D keeps its own extent.
    merged = run(boxes, [0.9, 0.8, 0.85, 0.7], method="nmm", threshold=0.5)
    assert merged.boxes.tolist() == [[0, 0, 12, 10], [4, 0, 14, 10], [30, 30, 40, 40]]
    assert merged.scores.tolist() == [0.9, 0.85, 0.7]
    assert merged.source.tolist() == [0, 2, 3]


def test_soft_nms_decays_overlapping_scores_by_a_gaussian() -> None:
    merged = run(
        [A, HALF_A, [50.0, 50.0, 60.0, 60.0]], [0.9, 0.8, 0.7], method="soft-nms", sigma=0.5
    )
    assert merged.source.tolist() == [0, 2, 1]  # the decayed box drops below the lone one
    assert merged.scores == pytest.approx([0.9, 0.7, 0.8 * math.exp(-0.25 / 0.5)])


def test_soft_nms_decay_can_reorder_which_box_is_picked_next() -> None:
    # B loses most of its score to A (IoU 0.5, sigma 0.1), so C is picked before B and then
    # decays B again (IoU(B, C) = 0.5) instead of being decayed by it.
    boxes = [A, HALF_A, [0.0, 0.0, 10.0, 2.5]]
    merged = run(boxes, [0.9, 0.8, 0.3], method="soft-nms", sigma=0.1, class_agnostic=True)
    b_score = 0.8 * math.exp(-0.25 / 0.1)  # 0.0657 < 0.3 * exp(-(0.25**2) / 0.1) = 0.16
    c_score = 0.3 * math.exp(-(0.25**2) / 0.1)
    assert merged.source.tolist() == [0, 2, 1]
    assert merged.scores == pytest.approx([0.9, c_score, b_score * math.exp(-0.25 / 0.1)])


def test_soft_nms_drops_boxes_decayed_below_min_score_or_the_floor() -> None:
    assert len(run([A, HALF_A], [0.9, 0.8], method="soft-nms", min_score=0.3)) == 2
    assert run([A, HALF_A], [0.9, 0.8], method="soft-nms", min_score=0.5).source.tolist() == [0]
    assert len(run([A, HALF_A], [0.9, 0.8], method="soft-nms", sigma=0.01)) == 1  # < 1e-3


def test_empty_and_single_inputs() -> None:
    for method in ("nms", "soft-nms", "nmm", "none"):
        empty = merge(
            np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), MergeParams(method=method)
        )
        assert len(empty) == 0 and empty.boxes.shape == (0, 4)
        assert run([A], [0.5], method=method).source.tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "nsm"}, UnknownNameError, "did you mean 'nms'"),
        ({"metric": "giou"}, UnknownNameError, "unknown merge metric"),
        ({"threshold": 1.5}, InvalidRequestError, r"between 0 and 1; set merge.iou"),
        ({"min_score": -0.1}, InvalidRequestError, "min_score"),
        ({"sigma": 0.0}, InvalidRequestError, "sigma"),
    ],
)
def test_invalid_params_say_what_to_change(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        MergeParams(**kwargs)  # type: ignore[arg-type]


def test_malformed_arrays_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="same length"):
        merge(np.array([A]), np.array([0.5, 0.4]), np.array([0]), MergeParams())
    with pytest.raises(InvalidRequestError, match="integer class ids"):
        merge(np.array([A]), np.array([0.5]), np.array([0.5]), MergeParams())
    with pytest.raises(InvalidRequestError, match="finite"):
        merge(np.array([A]), np.array([np.nan]), np.array([0]), MergeParams())


# --- naive references and properties ------------------------------------------------------------


def overlap(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    if inter <= 0.0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return float(
        inter / (area_a + area_b - inter) if metric == "iou" else inter / min(area_a, area_b)
    )


def priority(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], *boxes[i], labels[i], i))


def same_group(labels: np.ndarray, i: int, j: int, params: MergeParams) -> bool:
    return params.class_agnostic or bool(labels[i] == labels[j])


def naive_greedy(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, params: MergeParams
) -> list[tuple[int, np.ndarray]]:
    """O(n^2) NMS / NMM straight from the definition; returns (source, box) in priority order."""
    order = [i for i in priority(boxes, scores, labels) if scores[i] >= params.min_score]
    removed: set[int] = set()
    kept = []
    for pos, i in enumerate(order):
        if i in removed:
            continue
        grown = boxes[i].copy()
        for j in order[pos + 1 :]:
            if j in removed or not same_group(labels, i, j, params):
                continue
            if overlap(boxes[i], boxes[j], params.metric) > params.threshold:
                removed.add(j)
                grown[:2] = np.minimum(grown[:2], boxes[j][:2])
                grown[2:] = np.maximum(grown[2:], boxes[j][2:])
        kept.append((i, grown if params.method == "nmm" else boxes[i]))
    return kept


def naive_soft_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, params: MergeParams
) -> dict[int, float]:
    rank = {i: r for r, i in enumerate(priority(boxes, scores, labels))}
    current = {i: float(scores[i]) for i in range(len(scores)) if scores[i] >= params.min_score}
    floor = params.min_score if params.min_score > 0 else 1e-3
    kept: dict[int, float] = {}
    while current:
        i = min(current, key=lambda k: (-current[k], rank[k]))
        kept[i] = current.pop(i)
        for j in list(current):
            m = overlap(boxes[i], boxes[j], params.metric)
            if m > 0 and same_group(labels, i, j, params):
                current[j] *= math.exp(-(m * m) / params.sigma)
                if current[j] < floor:
                    del current[j]
    return kept


@st.composite
def detections(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    corner = rng.integers(0, 40, (n, 2))
    size = rng.integers(1, 20, (n, 2))
    boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float64)
    boxes[: n // 5] = boxes[n - n // 5 :]  # some exact duplicate boxes
    scores = rng.integers(1, 10, n) / 10.0  # ties are common
    labels = rng.integers(0, 3, n)
    return boxes, scores, labels


params_strategy = st.builds(
    MergeParams,
    method=st.sampled_from(["nms", "soft-nms", "nmm", "none"]),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7]),
    metric=st.sampled_from(["iou", "ios"]),
    class_agnostic=st.booleans(),
    min_score=st.sampled_from([0.0, 0.25]),
    sigma=st.sampled_from([0.1, 0.5]),
)


@settings(max_examples=200, deadline=None)
@given(detections(), params_strategy, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(
    dets: tuple[np.ndarray, np.ndarray, np.ndarray], params: MergeParams, random: object
) -> None:
    boxes, scores, labels = dets
    permutation = np.arange(len(scores))
    random.shuffle(permutation)  # type: ignore[attr-defined]
    first = merge(boxes, scores, labels, params)
    second = merge(boxes[permutation], scores[permutation], labels[permutation], params)
    assert first.boxes.tolist() == second.boxes.tolist()
    assert first.scores.tolist() == second.scores.tolist()
    assert first.labels.tolist() == second.labels.tolist()
    # sources may differ only between identical input rows
    assert labels[first.source].tolist() == labels[permutation][second.source].tolist()
    if params.method != "soft-nms":
        assert scores[first.source].tolist() == first.scores.tolist()
    if params.method in ("nms", "none"):
        assert boxes[first.source].tolist() == first.boxes.tolist()


@settings(max_examples=200, deadline=None)
@given(detections(), params_strategy)
def test_nms_and_nmm_match_the_naive_reference(
    dets: tuple[np.ndarray, np.ndarray, np.ndarray], params: MergeParams
) -> None:
    boxes, scores, labels = dets
    for method in ("nms", "nmm"):
        p = MergeParams(
            method, params.threshold, params.metric, params.class_agnostic, params.min_score
        )
        merged = merge(boxes, scores, labels, p)
        expected = naive_greedy(boxes, scores, labels, p)
        got = sorted(zip(merged.source.tolist(), merged.boxes.tolist(), strict=True))
        assert got == sorted((i, b.tolist()) for i, b in expected)


@settings(max_examples=200, deadline=None)
@given(detections(), params_strategy)
def test_soft_nms_matches_the_naive_reference(
    dets: tuple[np.ndarray, np.ndarray, np.ndarray], params: MergeParams
) -> None:
    boxes, scores, labels = dets
    p = MergeParams(
        "soft-nms",
        params.threshold,
        params.metric,
        params.class_agnostic,
        params.min_score,
        params.sigma,
    )
    merged = merge(boxes, scores, labels, p)
    expected = naive_soft_nms(boxes, scores, labels, p)
    assert sorted(merged.source.tolist()) == sorted(expected)
    assert dict(zip(merged.source.tolist(), merged.scores.tolist(), strict=True)) == pytest.approx(
        expected
    )
    order = np.lexsort((merged.labels, *merged.boxes.T[::-1], -merged.scores))
    assert order.tolist() == list(range(len(merged)))  # returned in priority order


@pytest.mark.parametrize("method", ["nms", "soft-nms", "nmm"])
@pytest.mark.parametrize("strip", [1, 7, 64])
def test_strips_of_boxes_find_the_same_pairs_as_one_index(
    method: str, strip: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pairs found strip by strip (bounded memory) give exactly the one-tree result, with
    ties in y0, tall boxes reaching across many strips and several labels."""
    from tilerunner.merging import suppression

    rng = np.random.default_rng(strip)
    n = 600
    xy = rng.uniform(0, 300, (n, 2))
    xy[rng.random(n) < 0.2, 1] = 100.0
    wh = np.where(rng.random((n, 1)) < 0.9, rng.uniform(1, 40, (n, 2)), rng.uniform(0, 250, (n, 2)))
    boxes, scores, labels = np.hstack([xy, xy + wh]), rng.random(n), rng.integers(0, 3, n)
    params = MergeParams(method=method, threshold=0.3)  # type: ignore[arg-type]
    whole = merge(boxes, scores, labels, params)
    monkeypatch.setattr(suppression, "STRIP_BOXES", strip)
    strips = merge(boxes, scores, labels, params)
    assert len(whole) < n or (whole.scores < scores[whole.source]).any()  # something merged
    assert np.array_equal(strips.source, whole.source)
    assert np.array_equal(strips.boxes, whole.boxes)
    assert np.allclose(strips.scores, whole.scores)
