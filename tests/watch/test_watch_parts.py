"""The parts of a watch without a server: events, filters, rolling batches, the template, the
folder's settling rule, and the store's exactly-once record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tr_clock import FakeClock
from tr_stores import store_url  # noqa: F401 - fixture
from tr_watch import recorded

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobState
from tilerunner.store import open_store
from tilerunner.store.watched import WatchedObject
from tilerunner.watch import JobTemplate, KeyFilter, RollingPolicy, job_id_for
from tilerunner.watch.directory import DirectoryScan
from tilerunner.watch.notifications import parse_s3_events

WATCH = "s3://uploads/in/"


def _event(key: str, name: str = "ObjectCreated:Put", bucket: str = "uploads") -> dict[str, object]:
    return {
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": "abc", "size": 7}},
    }


def test_events_decode_keys_and_skip_the_test_event_and_other_kinds() -> None:
    body = json.dumps(
        {"Records": [_event("in/a+b%2Bc%C3%A9.tif"), _event("in/x.tif", "ObjectRemoved:Delete")]}
    )
    [event] = parse_s3_events(body)
    assert (event.bucket, event.key, event.etag, event.size) == (
        "uploads",
        "in/a b+cé.tif",
        "abc",
        7,
    )
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}
    assert parse_s3_events(json.dumps(test_event)) == []
    through_sns = json.dumps({"Type": "Notification", "Message": body})
    assert [e.key for e in parse_s3_events(through_sns)] == ["in/a b+cé.tif"]
    for junk in ("not json", "[1]", '{"hello": 1}'):
        with pytest.raises(ValueError):
            parse_s3_events(junk)


def test_key_filter_by_suffix_in_any_case_and_by_glob() -> None:
    keys = KeyFilter((".tif", ".jp2"))
    assert [keys.accepts(k) for k in ("a.tif", "b.TIF", "c.jp2", "d.tiff", "e.tif.txt")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    dated = KeyFilter((".tif",), "2026-*/*")
    assert dated.accepts("2026-11/a.tif") and not dated.accepts("2025-11/a.tif")
    with pytest.raises(InvalidRequestError, match="with its dot"):
        KeyFilter(("tif",))


def _objects(n: int, start: float = 0.0) -> list[WatchedObject]:
    return [WatchedObject(f"k{i}", "v", f"s3://b/k{i}", 1, start + i) for i in range(n)]


def test_rolling_batches_by_count_by_age_and_both() -> None:
    seven = _objects(7, start=100.0)
    assert [len(b) for b in RollingPolicy().batches(seven, 0.0)] == [1] * 7
    assert [len(b) for b in RollingPolicy(every=3).batches(seven, 1e9)] == [3, 3]
    by_age = RollingPolicy(seconds=10.0)
    assert by_age.batches(seven, 109.9) == []  # the oldest waited 9.9 s
    assert [len(b) for b in by_age.batches(seven, 110.0)] == [7]
    both = RollingPolicy(every=3, seconds=10.0)
    assert [len(b) for b in both.batches(seven, 105.0)] == [3, 3]
    assert [b[0].key for b in both.batches(seven, 116.0)] == ["k0", "k3", "k6"]
    assert RollingPolicy(every=3).batches([], 0.0) == []
    with pytest.raises(InvalidRequestError, match="--rolling-seconds"):
        RollingPolicy(seconds=0)


def test_job_ids_follow_the_members_not_their_order() -> None:
    a, b = _objects(2)
    assert job_id_for(WATCH, [a, b]) == job_id_for(WATCH, [b, a])
    assert job_id_for(WATCH, [a]) != job_id_for(WATCH, [b])
    assert job_id_for(WATCH, [a]) != job_id_for("s3://other/", [a])
    newer = WatchedObject(a.key, "v2", a.url)
    assert job_id_for(WATCH, [newer]) != job_id_for(WATCH, [a])
    assert len(job_id_for(WATCH, [a, b])) <= 64


def test_template_sources_are_replaced_and_placeholders_filled(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    out = tmp_path / "out"
    out.mkdir()
    document = {
        "name": "scan",
        "sources": ["ignored.tif"],
        "pipeline": [{"task": "detect", "model": "det"}],
        "outputs": [{"uri": f"{out}/{{stem}}-{{job_id}}.geojson"}],
    }
    path.write_text(json.dumps(document))
    spec = JobTemplate.load(path).spec_for(
        [WatchedObject("in/a b.tif", "e", "s3://u/in/a b.tif")], "j1"
    )
    assert [(s.id, s.url) for s in spec.sources] == [("in/a b.tif", "s3://u/in/a b.tif")]  # type: ignore[union-attr]
    assert spec.outputs[0].uri == f"{out}/a b-j1.geojson"
    assert spec.name == "scan-a b"


@pytest.mark.parametrize(
    ("document", "rolling", "message"),
    [
        ('{"pipeline": [{"task": "detect", "model": "det"}], "tilling": {}}', False,
         "tilling: unknown field"),
        ('{"pipeline": []}', False, "pipeline"),
        ("[1, 2]", False, "must be a JSON object"),
        ("{", False, "is not JSON"),
        ('{"pipeline": [{"task": "detect", "model": "det"}], '
         '"outputs": [{"uri": "o/{stem}.geojson"}]}', True, "cannot name {stem}"),
        ('{"pipeline": [{"task": "detect", "model": "det"}], '
         '"outputs": [{"uri": "o/{stem}.shpx"}]}', False, "unknown output format '.shpx'"),
    ],
)  # fmt: skip
def test_a_bad_template_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: str, rolling: bool, message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the outputs' directory "o" exists, so the format is what fails
    (tmp_path / "o").mkdir()
    path = tmp_path / "bad.json"
    path.write_text(document)
    with pytest.raises(InvalidRequestError, match=r"bad\.json") as caught:
        JobTemplate.load(path, rolling=rolling)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_written_in_pieces_is_taken_once_whole(tmp_path: Path) -> None:
    clock = FakeClock(now=2e9)  # files written now look fresh to it: mtime ~ 1.7e9 < 2e9 - 2
    old = tmp_path / "old.tif"
    old.write_bytes(b"x" * 10)
    scan = DirectoryScan(tmp_path, KeyFilter(), settle_seconds=2.0, clock=clock)
    assert [o.key for o in scan.discover().objects] == ["old.tif"]  # there before the watch

    clock.now = Path(old).stat().st_mtime  # from here on, files are as fresh as they are
    growing = tmp_path / "sub" / "scene.tif"
    growing.parent.mkdir()
    (tmp_path / ".scene.tif.upload").write_bytes(b"hidden")
    (tmp_path / "copy.tif.part").write_bytes(b"partial")
    with growing.open("wb") as handle:
        handle.write(b"a" * 100)
        handle.flush()
        first = scan.discover()
        assert "sub/scene.tif" not in {o.key for o in first.objects} and first.more
        clock.advance(1.5)
        handle.write(b"b" * 100)
        handle.flush()
        clock.advance(1.5)  # 3 s after the first look, but only 1.5 s since it changed
        assert "sub/scene.tif" not in {o.key for o in scan.discover().objects}
    clock.advance(2.0)
    taken = {o.key: o for o in scan.discover().objects}
    assert set(taken) == {"old.tif", "sub/scene.tif"}  # never the hidden or partial names
    assert taken["sub/scene.tif"].size == 200
    assert taken["sub/scene.tif"].url == str(growing.resolve())


def test_the_store_gives_each_object_to_one_job(store_url: str) -> None:  # noqa: F811
    store = open_store(store_url)
    a, b, c = _objects(3)
    assert [o.key for o in store.record_objects(WATCH, [a, b])] == ["k0", "k1"]
    assert [o.key for o in store.record_objects(WATCH, [a, b, c])] == ["k2"]
    assert store.seen_objects(WATCH) == {("k0", "v"), ("k1", "v"), ("k2", "v")}
    spec = {"sources": ["x"], "pipeline": [{"task": "detect", "model": "det"}]}
    assert store.accept_watched_job(WATCH, "job-1", "one", spec, [a, b])
    # b is in job-1: a job that claims it too is refused whole, c stays waiting
    assert not store.accept_watched_job(WATCH, "job-2", "two", spec, [b, c])
    assert store.get_job("job-2") is None
    assert [o.key for o in store.waiting_objects(WATCH)] == ["k2"]
    assert store.watched_jobs(WATCH, [JobState.PLANNING]) == ["job-1"]
    assert store.aggregations_due(WATCH) == []  # planned and run by nobody yet
    assert recorded(store) == [("k0", "v", "job-1"), ("k1", "v", "job-1"), ("k2", "v", None)]
    # the same object under another watch is another object
    assert [o.key for o in store.record_objects("s3://other/", [a])] == ["k0"]
    # a job submitted elsewhere: its members are given its id first, the submission noted after
    assert store.assign_objects(WATCH, "job-3", [c])
    assert not store.assign_objects(WATCH, "job-4", [c])
    unsubmitted = store.unsubmitted_jobs(WATCH)
    assert {job: [o.key for o in members] for job, members in unsubmitted.items()} == {
        "job-3": ["k2"]
    }
    store.mark_submitted(WATCH, "job-3")
    assert store.unsubmitted_jobs(WATCH) == {}
    store.engine.dispose()
