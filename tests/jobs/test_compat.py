"""OSML image requests and Antenna pipeline requests, mapped to job documents (pure).

The sample requests in tests/data/compat are copied from the peers' own docs and tests (see its
README); the refusal cases each check that the message names the field as the peer spells it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import CallbackSpec, StageSpec, parse_job
from tilerunner.jobs.compat import antenna, osml

DATA = Path(__file__).resolve().parents[1] / "data" / "compat"


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _rendered(name: str, values: dict[str, str]) -> Any:
    """A sample with its placeholders (``{{name}}`` or ``<name>``) filled in."""
    text = (DATA / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value).replace(f"<{key}>", value)
    assert not re.search(r"\{\{|<[a-z_]+>", text), "a placeholder is left"
    return json.loads(text)


def _refused(map_: Any, request: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        map_(request)
    return str(caught.value)


def _names(message: str, field: str) -> bool:
    """True if ``message`` names ``field`` as the subject of a complaint (``field: ...``)."""
    return re.search(rf"(^|: |; ){re.escape(field)}: ", message) is not None


# ------------------------------------------------------------------------------------ OSML
LOAD_TEST = {
    "test_imagery_location": "s3://mr-test-imagery",
    "test_results_bucket": "mr-test-results",
    "test_results_prefix": "load/",
}


def test_every_osml_load_test_request_maps_to_a_valid_job() -> None:
    requests = _rendered("osml/sample-requests.json", LOAD_TEST)
    assert len(requests) == 11
    for n, request in enumerate(requests):
        # what ModelRunner's load test adds to each request before it sends it
        request |= {"jobId": f"job-{n}", "jobName": f"test-job-{n}"}
        document = osml.to_job_document(request)
        spec = parse_job(document)
        image = request["imageUrls"][0]
        assert spec.sources == [image] and image.startswith("s3://mr-test-imagery/")
        assert spec.pipeline[0].model == request["imageProcessor"]["name"]
        assert spec.pipeline[0].task == "detect"
        assert (spec.tiling.tile_size, spec.tiling.overlap) == (512, 128)
        assert (spec.merge.method, spec.merge.iou, spec.merge.class_agnostic) == (
            "nms",
            0.75,
            False,
        )
        assert [o.uri for o in spec.outputs] == [f"s3://mr-test-results/load/job-{n}.geojson"]
        assert spec.outputs[0].format == "geojson"
        assert spec.name == f"test-job-{n}"


def test_the_api_sample_is_refused_for_its_kinesis_output_and_maps_without_it() -> None:
    values = {
        "job_name": "scene-7",
        "job_id": "scene-7-1",
        "image_url": "s3://imagery/scene-7.ntf",
        "result_bucket_name": "results",
        "result_stream_name": "features",
        "sagemaker_endpoint": "aircraft",
    }
    request = _rendered("osml/modelrunner-api-sample.json", values)
    message = _refused(osml.to_job_document, request)
    assert _names(message, "outputs[1].type") and "Kinesis" in message
    request["outputs"] = request["outputs"][:1]
    spec = parse_job(osml.to_job_document(request))
    assert spec.outputs[0].uri == "s3://results/scene-7/scene-7-1.geojson"
    assert (spec.tiling.tile_size, spec.tiling.overlap) == (2048, 50)
    assert spec.pipeline[0].params == {"TargetVariant": "AllTraffic"}
    assert spec.name == "scene-7"


def test_the_unit_test_requests_map_as_model_runner_reads_them() -> None:
    kinesis = _json("osml/test-image-request.json")
    assert _names(_refused(osml.to_job_document, kinesis), "outputs[1].type")
    legacy = parse_job(osml.to_job_document(_json("osml/test-legacy-output.json")))
    assert [o.uri for o in legacy.outputs] == [
        "s3://test-bucket/images/outputs/test-job-id.geojson"
    ]
    assert (legacy.tiling.tile_size, legacy.tiling.overlap) == (1024, 50)
    texts = parse_job(osml.to_job_document(_json("osml/test-string-tile-dimensions.json")))
    assert (texts.tiling.tile_size, texts.tiling.overlap) == (512, 0)
    assert texts.name == "test-job-id"  # no jobName: the jobId names the job


def _osml(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobId": "j1",
        "imageUrls": ["s3://imagery/a.tif"],
        "outputs": [{"type": "S3", "bucket": "results", "prefix": "p"}],
        "imageProcessor": {"name": "det", "type": "SM_ENDPOINT"},
    }
    return request | changes


def _distillation(**algorithm: Any) -> list[dict[str, Any]]:
    return [{"step": "FEATURE_DISTILLATION", "algorithm": algorithm}]


def test_osml_defaults_and_soft_nms() -> None:
    spec = parse_job(osml.to_job_document(_osml()))
    assert (spec.tiling.tile_size, spec.tiling.overlap) == (1024, 50)  # ModelRunner's defaults
    assert (spec.merge.method, spec.merge.iou) == ("nms", 0.75)
    soft = _osml(postProcessing=_distillation(algorithmType="SOFT_NMS", sigma=0.5))
    merge = parse_job(osml.to_job_document(soft)).merge
    assert (merge.method, merge.min_score) == ("soft-nms", 0.0001)
    nms = _osml(postProcessing=_distillation(algorithmType="NMS", iouThreshold=0.3))
    assert parse_job(osml.to_job_document(nms)).merge.iou == 0.3


_S3 = {"type": "S3", "bucket": "b", "prefix": ""}
_NMS = _distillation(algorithmType="NMS")
_ALGORITHM = "postProcessing[0].algorithm"
OSML_REFUSALS = [
    ({"imageUrls": ["s3://a/1.tif", "s3://a/2.tif"]}, "imageUrls[1]"),
    ({"imageUrls": []}, "imageUrls"),
    ({"imageReadRole": "arn:aws:iam::1:role/r"}, "imageReadRole"),
    ({"imageProcessor": {"name": "det", "assumedRole": "arn:x"}}, "imageProcessor.assumedRole"),
    ({"imageProcessor": {"name": "det", "type": "NONE"}}, "imageProcessor.type"),
    ({"imageProcessor": {"name": "https://host/model"}}, "imageProcessor.name"),
    ({"regionOfInterest": "POINT (1 2)"}, "regionOfInterest"),
    ({"featureProperties": [{"source": "x"}]}, "featureProperties"),
    ({"imageProcessorTileOverlap": 1024}, "imageProcessorTileOverlap"),
    ({"imageProcessorTileSize": 8}, "imageProcessorTileSize"),
    ({"imageProcessorTileFormat": "TIFF"}, "imageProcessorTileFormat"),
    ({"imageProcessorTileCompression": "ZIP"}, "imageProcessorTileCompression"),
    ({"outputs": [{"type": "SQS", "queue": "q"}]}, "outputs[0].type"),
    ({"outputs": [_S3 | {"role": "arn:x"}]}, "outputs[0].role"),
    ({"outputs": [_S3 | {"bucket": "arn:aws:s3:::b"}]}, "outputs[0].bucket"),
    ({"outputs": [{"type": "S3", "bucket": "b"}]}, "outputs[0].prefix"),
    ({"outputs": [], "outputBucket": "b"}, "outputPrefix"),
    ({"postProcessing": _NMS * 2}, "postProcessing[1]"),
    ({"postProcessing": _distillation(algorithmType="WBF")}, f"{_ALGORITHM}.algorithmType"),
    ({"postProcessing": _distillation(algorithmType="SOFT_NMS")}, f"{_ALGORITHM}.sigma"),
    ({"postProcessing": [_NMS[0] | {"step": "featureDistillation"}]}, "postProcessing[0].step"),
    ({"rangeAdjustment": "DRA"}, "rangeAdjustment"),
    ({"imageProcessorTileSze": 512}, "imageProcessorTileSze"),
    ({"jobId": ""}, "jobId"),
]


@pytest.mark.parametrize(("changes", "field"), OSML_REFUSALS)
def test_osml_refusals_name_the_field(changes: dict[str, Any], field: str) -> None:
    message = _refused(osml.to_job_document, _osml(**changes))
    assert _names(message, field), message


def test_osml_docs_post_processing_example_is_refused_as_model_runner_refuses_it() -> None:
    # the API guide shows skipBoxThreshold on NMS; ModelRunner's NMS takes no such field
    request = _osml(**_json("osml/modelrunner-api-post-processing.json"))
    message = _refused(osml.to_job_document, request)
    assert _names(message, "postProcessing[0].algorithm.skipBoxThreshold"), message


def test_osml_model_names_map_through_models() -> None:
    served = {"aircraft-endpoint": "aircraft", "two-stage": [_stage("det"), _stage("cls")]}
    request = _osml(imageProcessor={"name": "aircraft-endpoint"})
    spec = parse_job(osml.to_job_document(request, models=served))
    assert spec.pipeline[0].model == "aircraft"
    typo = _osml(imageProcessor={"name": "aircraft-endpont"})
    message = _refused(lambda r: osml.to_job_document(r, models=served), typo)
    assert _names(message, "imageProcessor.name") and "'aircraft-endpoint'" in message
    stages = _osml(imageProcessor={"name": "two-stage"})
    message = _refused(lambda r: osml.to_job_document(r, models=served), stages)
    assert _names(message, "imageProcessor.name") and "2 stages" in message


def test_osml_peer_fields_and_url_field_names() -> None:
    request = osml.parse_request(_osml(jobName="run"))
    assert osml.peer_fields(request) == {"jobId": "j1", "jobName": "run"}
    assert osml.peer_field("sources[0]", request) == "imageUrls[0]"
    assert osml.peer_field("outputs[0].uri", request) == "outputs[0].bucket"
    assert osml.peer_field("tiling.tile_size", request) == "imageProcessorTileSize"
    legacy = osml.parse_request(_osml(outputs=None, outputBucket="b", outputPrefix="p"))
    assert osml.peer_field("outputs[0].uri", legacy) == "outputBucket"


def _stage(model: str) -> StageSpec:
    return StageSpec(task="classify" if model == "cls" else "detect", model=model)


# ---------------------------------------------------------------------------------- Antenna
def test_antenna_schema_example_maps_to_a_valid_job() -> None:
    request = _json("antenna/pipeline-request-example.json")
    spec = parse_job(antenna.to_job_document(request))
    assert spec.name == "random"
    assert [(s.id, s.url) for s in spec.sources] == [  # type: ignore[union-attr]
        ("123", request["source_images"][0]["url"])
    ]
    assert spec.pipeline[0].model == "random" and spec.pipeline[0].task == "detect"
    assert spec.pipeline[0].params == {"force_reprocess": True, "auth_token": "abc123"}
    assert spec.callback is None


def test_antenna_minimal_service_request_maps_to_a_valid_job() -> None:
    spec = parse_job(antenna.to_job_document(_json("antenna/minimal-process-request.json")))
    assert [s.id for s in spec.sources] == ["1", "2"]  # type: ignore[union-attr]
    assert spec.pipeline[0].params == {}


IMAGES = [{"id": "1", "url": "https://img/1.jpg"}, {"id": "2", "url": "https://img/2.jpg"}]


def _antenna(**config: Any) -> dict[str, Any]:
    # the first id is a number: Antenna's pydantic models take it as its text
    images = [IMAGES[0] | {"id": 1}, IMAGES[1]]
    return {"pipeline": "moths", "source_images": images, "detections": [], "config": config}


def test_antenna_config_carries_callback_tiling_and_params() -> None:
    request = _antenna(
        callback_url="https://antenna.example/hook",
        callback_token="tok",
        tile_size=1024,
        tile_overlap=128,
        request_source_image_batch_size=8,  # Antenna's own: ignored
        threshold=0.4,
        auth_token=None,  # unset: left out
    )
    spec = parse_job(antenna.to_job_document(request))
    assert [s.id for s in spec.sources] == ["1", "2"]  # type: ignore[union-attr]
    assert (spec.tiling.tile_size, spec.tiling.overlap) == (1024, 128)
    assert spec.pipeline[0].params == {"threshold": 0.4}
    callback = spec.callback
    assert callback is not None
    assert (callback.url, callback.token, callback.style) == (
        "https://antenna.example/hook",
        "tok",
        "antenna",
    )
    assert len(callback.secret) >= 16  # drawn at random: Antenna does not check signatures
    given = _antenna(callback_url="https://a.example/h", callback_secret="s" * 16)
    assert antenna.to_job_document(given)["callback"]["secret"] == "s" * 16


_DETECTION = {"source_image": {"id": "1", "url": "u"}, "algorithm": {"name": "d", "key": "d"}}
ANTENNA_REFUSALS = [
    (_antenna() | {"detections": [_DETECTION]}, "detections"),
    (_antenna() | {"source_images": [{"id": "1", "url": "u"}] * 2}, "source_images[1].id"),
    (_antenna() | {"source_images": [{"id": "1"}]}, "source_images[0].url"),
    (_antenna() | {"source_images": []}, "source_images"),
    (_antenna() | {"projectId": 3}, "projectId"),
    (_antenna() | {"source_images": [IMAGES[0] | {"eventId": 4}]}, "source_images[0].eventId"),
    (_antenna() | {"pipeline": "moths detector"}, "pipeline"),
    (_antenna(callback_token="t"), "config.callback_token"),
    (_antenna(callback_url=5), "config.callback_url"),
    (_antenna(callback_url="https://a/h", callback_secret="short"), "config.callback_secret"),
    (_antenna(tile_size="big"), "config.tile_size"),
    (_antenna(tile_size=8), "config.tile_size"),
    (_antenna(tile_overlap=512), "config.tile_overlap"),
    (_antenna(labels=["moth", "wasp"]), "config.labels"),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "field"), ANTENNA_REFUSALS)
def test_antenna_refusals_name_the_field(request_: dict[str, Any], field: str) -> None:
    message = _refused(antenna.to_job_document, request_)
    assert _names(message, field), message


def test_antenna_multi_stage_pipeline_is_refused_naming_the_pipeline() -> None:
    served = {"moths": [_stage("det"), _stage("cls")], "moth-detector": "det"}
    message = _refused(lambda r: antenna.to_job_document(r, models=served), _antenna())
    assert _names(message, "pipeline") and "2 stages (detect det, classify cls)" in message
    one = _antenna() | {"pipeline": "moth-detector"}
    assert antenna.to_job_document(one, models=served)["pipeline"][0]["model"] == "det"


def test_antenna_peer_fields_and_url_field_names() -> None:
    request = antenna.parse_request(_antenna())
    assert antenna.peer_fields(request) == {"pipeline": "moths", "source_images": IMAGES}
    assert antenna.peer_field("sources[1].url") == "source_images[1].url"
    assert antenna.peer_field("callback.url") == "config.callback_url"


# Field names of Antenna's response models (ami/ml/schemas.py): DetectionResponse and
# ClassificationResponse; the top level is checked against their own result sample.
DETECTION_FIELDS = {
    "source_image_id", "bbox", "inference_time", "algorithm", "timestamp", "crop_image_url",
    "classifications",
}  # fmt: skip
CLASSIFICATION_FIELDS = {
    "classification", "labels", "scores", "logits", "inference_time", "algorithm", "terminal",
    "timestamp",
}  # fmt: skip


def _view(**changes: Any) -> dict[str, Any]:
    """A job object as ``job_view`` gives it, for the mapping of :func:`_antenna`."""
    spec = antenna.to_job_document(_antenna())
    view = {
        "id": "job-1",
        "name": "moths",
        "status": "succeeded",
        "timestamps": {"created_at": 1000.0, "queued_at": 1001.0, "succeeded_at": 1012.5},
        "errors": [],
        "error": None,
        "spec": spec,
    }
    return view | changes


def _feature(image: str, box: list[float], label: str, score: float) -> dict[str, Any]:
    props = {"score": score, "label": label, "class_id": 0, "image": image, "pixel_bbox": box}
    return {"type": "Feature", "geometry": None, "properties": props}


def test_antenna_callback_body_is_a_pipeline_results_response() -> None:
    features = [
        _feature("1", [10, 20, 30, 45], "moth", 0.9),
        _feature("2", [0, 0, 5, 5], "moth", 0.4),
    ]
    callback = CallbackSpec(
        url="https://a.example/h", secret="s" * 16, style="antenna", token="tok"
    )
    body, headers = antenna.callback_body(_view(), callback, features=features)
    sent = json.loads(body)
    sample = _json("antenna/result-endpoint-body.json")["results"][0]["result"]
    assert set(sent) == set(sample)
    assert sent["pipeline"] == "moths" and sent["total_time"] == 12.5
    assert sent["source_images"] == IMAGES
    assert sent["errors"] is None and sent["algorithms"] == {}
    first = sent["detections"][0]
    assert set(first) == DETECTION_FIELDS
    assert set(first["classifications"][0]) == CLASSIFICATION_FIELDS
    assert first["source_image_id"] == "1"
    assert first["bbox"] == {"x1": 10.0, "y1": 20.0, "x2": 30.0, "y2": 45.0}
    assert first["algorithm"] == {"name": "moths", "key": "moths"}
    assert first["classifications"][0]["classification"] == "moth"
    assert first["classifications"][0]["scores"] == [0.9]
    assert first["timestamp"].startswith("1970-01-01T00:16:52.5")
    assert headers == {"Content-Type": "application/json", "Authorization": "Token tok"}
    # without features the job object alone gives an answer without detections; a view that
    # carries the features gives the same body as passing them
    assert json.loads(antenna.callback_body(_view(), callback)[0])["detections"] == []
    carried = antenna.callback_body(_view(features=features), callback)[0]
    assert json.loads(carried) == sent


def test_antenna_callback_reports_errors_and_leaves_out_a_missing_token() -> None:
    view = _view(
        status="partial",
        errors=[{"code": "source_error", "message": "cannot open", "image": "2", "region": None}],
        error="one image failed",
    )
    callback = CallbackSpec(url="https://a.example/h", secret="s" * 16, style="antenna")
    body, headers = antenna.callback_body(view, callback)
    assert json.loads(body)["errors"] == [
        {"error": "cannot open", "image_id": "2"},
        {"error": "one image failed", "image_id": None},
    ]
    assert "Authorization" not in headers
