"""Initial loads above the COUNT() threshold: a Bulk API 2.0 query job, streamed and resumable."""

from __future__ import annotations

import pytest
from sf_helpers import drain, ids

from cxbridge.adapters import Cursor
from cxbridge.errors import RemoteError


@pytest.fixture
def seeded(fake):
    fake.add_field("Contact", "Score__c", "double")
    rows = [fake.insert("Contact", LastName=f"L{i}", Email=f"p{i}@example.com", HasOptedOutOfEmail=i % 2 == 0,
                        Score__c=i / 2) for i in range(2_500)]
    fake.tick(60)
    return rows


def test_big_initial_load_uses_a_bulk_job_and_streams_pages(fake, make_adapter, seeded, sleeps):
    fake.bulk_chunk = 1000  # results sets of 1,000 rows, Sforce-Locator between them
    adapter = make_adapter(bulk_threshold=1000, page_size=400)
    pages, cursor = drain(adapter, "contacts")
    assert sorted(ids(pages)) == sorted(seeded)
    assert len(ids(pages)) == len(seeded), "each row once"
    assert max(len(p.records) for p in pages) <= 400
    assert fake.calls("POST jobs/query") == 1
    assert fake.calls(r"GET jobs/query/\w+/results") == 3
    assert fake.calls(r"GET jobs/query/\w+$") == 2  # InProgress, then JobComplete
    assert sleeps and sleeps[0] == 2.0, "polls wait through the injected sleep"
    assert fake.calls("queryAll") == 1, "only the COUNT() went through REST"
    assert cursor.modstamp == fake.now and cursor.last_id is None and "bulk" not in cursor.state
    assert fake.jobs[next(iter(fake.jobs))]["operation"] == "queryAll"


def test_bulk_values_are_typed_like_rest(fake, make_adapter, seeded):
    bulk = {r.source_id: r for p in drain(make_adapter(bulk_threshold=0), "contacts")[0] for r in p.records}
    rest = {r.source_id: r for p in drain(make_adapter(bulk_threshold=10**6), "contacts")[0] for r in p.records}
    assert bulk.keys() == rest.keys()
    sample = seeded[3]
    assert bulk[sample].fields == rest[sample].fields
    assert bulk[sample].fields["HasOptedOutOfEmail"] is False and bulk[sample].fields["Score__c"] == 1.5
    assert all(bulk[i].hash() == rest[i].hash() for i in seeded), "no spurious change after switching paths"


def test_bulk_load_resumes_after_a_crash_from_locator_and_offset(fake, make_adapter, seeded):
    fake.bulk_chunk = 1000
    adapter = make_adapter(bulk_threshold=1000, page_size=300)
    committed: list[str] = []
    cursor = Cursor()
    for i, page in enumerate(adapter.read("contacts", Cursor())):
        committed += [r.source_id for r in page.records]
        cursor = page.cursor
        if i == 5:
            break  # crash: 5 pages of rows committed (the first page only carried the job id)
    assert cursor.state["bulk"]["offset"] > 0 or cursor.state["bulk"]["locator"]
    jobs_before = fake.calls("POST jobs/query")
    pages, final = drain(make_adapter(bulk_threshold=1000, page_size=300), "contacts", cursor)
    rest = ids(pages)
    assert committed + rest == committed + [i for i in rest if i not in committed]
    assert sorted(committed + rest) == sorted(seeded), "no loss, no duplicate"
    assert fake.calls("POST jobs/query") == jobs_before, "the same job is resumed"
    assert final.modstamp is not None


def test_changes_during_the_bulk_job_are_read_by_the_next_incremental_run(fake, make_adapter, seeded):
    adapter = make_adapter(bulk_threshold=0)
    cursor = Cursor()
    for i, page in enumerate(adapter.read("contacts", Cursor())):
        cursor = page.cursor
        if i == 0:  # job created; the snapshot bound is now
            fake.tick(5)
            fake.update("Contact", seeded[7], LastName="edited during load")
    fake.tick(120)
    pages, _ = drain(make_adapter(bulk_threshold=0), "contacts", cursor)
    latest = {r.source_id: r.fields["LastName"] for p in pages for r in p.records}
    assert latest[seeded[7]] == "edited during load"


def test_failed_job_raises_and_forgets_the_job(fake, make_adapter, seeded):
    fake.fail_jobs = True
    cursor = Cursor()
    with pytest.raises(RemoteError) as err:
        for page in make_adapter(bulk_threshold=0).read("contacts", Cursor()):
            cursor = page.cursor
    assert "Failed" in str(err.value) and err.value.kind == "transient"
    assert "bulk" not in cursor.state, "the next run starts a fresh job"
    fake.fail_jobs = False
    pages, _ = drain(make_adapter(bulk_threshold=0), "contacts", cursor)
    assert sorted(ids(pages)) == sorted(seeded)
    assert fake.calls("POST jobs/query") == 2


def test_small_initial_load_stays_on_rest(fake, make_adapter, seeded):
    drain(make_adapter(bulk_threshold=10_000), "contacts")
    assert fake.calls("POST jobs/query") == 0
    assert fake.calls(r"GET queryAll") == 2  # COUNT() and the query


def test_connection_dropped_mid_download_refetches_the_set_without_duplicates(fake, make_adapter, seeded, sleeps):
    fake.bulk_chunk = 1000
    fake.break_results_after = 60_000  # about 500 rows into the first results set
    pages, _ = drain(make_adapter(bulk_threshold=0, page_size=200), "contacts")
    got = ids(pages)
    assert len(got) == len(set(got)) == len(seeded), "no loss, no duplicate"
    assert fake.calls(r"GET jobs/query/\w+/results") == 4  # the broken set fetched twice
    assert sleeps, "backed off before fetching again"
