"""The writer thread: files, rotation by size/age/request, crash recovery, retention."""
import os
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from otlpd import files
from otlpd.decode import as_item
from otlpd.buffer import BufferFull
from otlpd.writer import SignalWriter, WriterSettings

SCHEMA = pa.schema([("id", pa.int64()), ("payload", pa.string())])


def make_batch(ids):
    ids = list(ids)
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.int64()), pa.array([f"payload-{i}" for i in ids], pa.string())],
        schema=SCHEMA)


def push(buffer, ids):
    batch = make_batch(ids)
    return buffer.push(batch, batch.nbytes, batch.num_rows)


def ids_in(paths):
    table = ds.dataset([str(p) for p in paths], format="ipc").to_table()
    return Counter(table.column("id").to_pylist())


def batches_of(groups):
    """The batches _coalesce yields, each checked against the items it says it holds."""
    result = []
    for group, batch in groups:
        assert batch.num_rows == sum(item.num_rows for item in group)
        result.append(batch)
    return result


def completed(directory):
    return sorted(Path(directory).glob("*.arrow"))


@pytest.fixture
def make_writer(tmp_path, buffer_cls):
    writers = []

    def factory(directory=None, **overrides):
        settings = WriterSettings(**{"write_interval": 0.05, "fsync": False, **overrides})
        buffer = buffer_cls(64 * 1024 * 1024, 10_000_000)
        writer = SignalWriter("traces", SCHEMA, buffer, directory or tmp_path / "traces", settings)
        writer.prepare()
        writer.start()
        writers.append(writer)
        return writer

    yield factory
    for writer in writers:
        writer.stop()


def test_stop_completes_file_readable_by_polars_and_pyarrow(make_writer, tmp_path):
    writer = make_writer()
    push(writer.buffer, range(100))
    push(writer.buffer, range(100, 150))
    writer.stop()
    paths = completed(tmp_path / "traces")
    assert len(paths) == 1
    assert not list((tmp_path / "traces").glob("*.part"))
    assert ids_in(paths) == Counter(range(150))
    frame = pl.scan_ipc(str(tmp_path / "traces" / "*.arrow")).collect()
    assert frame.height == 150
    assert frame.filter(pl.col("id") == 7)["payload"].to_list() == ["payload-7"]
    assert writer.status()["written_rows"] == 150
    assert writer.status()["files_rotated"] == 1


def test_file_name_and_in_progress_name(make_writer, tmp_path):
    writer = make_writer(write_interval=0.01)
    push(writer.buffer, range(10))
    deadline = time.monotonic() + 10
    while not list((tmp_path / "traces").glob("*.arrow.part")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert completed(tmp_path / "traces") == []  # a *.arrow glob never sees the file in progress
    part = next((tmp_path / "traces").glob("*.arrow.part"))
    assert files.sequence_of(part.name) == 1
    path = writer.rotate()
    assert path.name == part.name[: -len(".part")]
    assert path.name.startswith("traces-") and path.name.endswith("-000001.arrow")


def test_explicit_rotate_writes_everything_accepted_before(make_writer, tmp_path):
    writer = make_writer(write_interval=60)  # only rotate() makes it write
    push(writer.buffer, range(10))
    first = writer.rotate()
    push(writer.buffer, range(10, 25))
    second = writer.rotate()
    assert writer.rotate() is None  # nothing new: no empty file
    assert ids_in([first]) == Counter(range(10))
    assert ids_in([second]) == Counter(range(10, 25))
    assert files.sequence_of(second.name) == files.sequence_of(first.name) + 1


def test_rotation_by_size(make_writer, tmp_path):
    writer = make_writer(max_file_bytes=20_000, compression="none")
    for start in range(0, 5000, 500):
        push(writer.buffer, range(start, start + 500))
        time.sleep(0.06)
    writer.stop()
    paths = completed(tmp_path / "traces")
    assert len(paths) >= 3
    assert ids_in(paths) == Counter(range(5000))
    # every file but the last was rotated once it passed the bound, so at most one drain over it
    for path in paths[:-1]:
        assert path.stat().st_size < 20_000 + 40_000


def test_rotation_by_age(tmp_path, buffer_cls):
    now = [1_000_000.0]
    writer_clock = lambda: now[0]  # noqa: E731 - an injected clock
    settings = WriterSettings(write_interval=0.02, fsync=False, max_file_age=30)
    writer = SignalWriter("traces", SCHEMA, buffer_cls(1 << 26, 1 << 20), tmp_path / "t",
                          settings, clock=writer_clock)
    writer.prepare()
    writer.start()
    try:
        push(writer.buffer, range(5))
        wait_until(lambda: writer.status()["current_file_rows"] == 5)
        assert completed(tmp_path / "t") == []
        now[0] += 31
        writer._wake.set()
        wait_until(lambda: len(completed(tmp_path / "t")) == 1)
    finally:
        writer.stop()
    assert ids_in(completed(tmp_path / "t")) == Counter(range(5))


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_rotation_racing_eight_writers_loses_and_duplicates_nothing(make_writer, tmp_path):
    writer = make_writer(write_interval=0.005, flush_rows=50)
    accepted = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(9)

    def produce(thread_id):
        barrier.wait()
        n = 0
        while not stop.is_set() or n < 50:
            ids = range((thread_id * 100_000 + n) * 10, (thread_id * 100_000 + n) * 10 + 10)
            n += 1
            time.sleep(0)  # let the GIL go: eight threads pushing flat out starve the writer and the
            try:           # rotations of it on a loaded machine (12 rotations a minute, seen in CI)
                push(writer.buffer, ids)
            except BufferFull:
                time.sleep(0.001)  # back off, as a client would
                continue
            with lock:
                accepted.update(ids)

    rotated = []

    def rotate():
        barrier.wait()
        while len(rotated) < 20:
            path = writer.rotate()
            if path is not None:
                rotated.append(path)
        stop.set()

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(8)]
    rotator = threading.Thread(target=rotate)
    for thread in threads + [rotator]:
        thread.start()
    rotator.join(60)
    stop.set()
    for thread in threads:
        thread.join(60)
    writer.stop()
    paths = completed(tmp_path / "traces")
    assert len(rotated) == 20
    assert sum(accepted.values()) >= 8 * 50 * 10
    assert ids_in(paths) == accepted


def write_part(path, batches, torn_bytes=0):
    """A file in progress as a killed writer leaves it: no footer, maybe a torn last batch."""
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file(sink, SCHEMA, options=pa.ipc.IpcWriteOptions(compression="zstd"))
        for batch in batches:
            writer.write_batch(batch)
        size = sink.tell()
    data = path.read_bytes()
    if torn_bytes:
        # simulate the last batch being cut off mid-write
        data = data[: size - torn_bytes]
    path.write_bytes(data)


def test_recovery_completes_files_left_in_progress(tmp_path, buffer_cls):
    directory = tmp_path / "traces"
    directory.mkdir()
    name = files.file_name("traces", 1_700_000_000, 7)
    write_part(directory / (name + ".part"), [make_batch(range(10)), make_batch(range(10, 30))])
    torn = files.file_name("traces", 1_700_000_100, 8)
    write_part(directory / (torn + ".part"), [make_batch(range(100, 110)), make_batch(range(110, 130))],
               torn_bytes=40)
    empty = files.file_name("traces", 1_700_000_200, 9)
    (directory / (empty + ".part")).write_bytes(b"ARROW1")
    writer = SignalWriter("traces", SCHEMA, buffer_cls(1 << 20, 1000), directory,
                          WriterSettings(fsync=True))
    recovered = writer.prepare()
    assert sorted(p.name for p in recovered) == sorted([name, torn])
    assert not list(directory.glob("*.part"))
    assert ids_in([directory / name]) == Counter(range(30))
    assert ids_in([directory / torn]) == Counter(range(100, 110))  # the torn batch is dropped
    assert writer.status()["rows_recovered"] == 40
    # new files continue after the highest sequence number seen
    writer.start()
    push(writer.buffer, [1])
    path = writer.rotate()
    writer.stop()
    assert files.sequence_of(path.name) == 10


def test_retention_by_age_and_total_bytes(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    now = time.time()
    sizes = []
    for seq in range(1, 6):
        path = directory / files.file_name("logs", now, seq)
        files.write_ipc_file(path, SCHEMA, [make_batch(range(seq * 100))], pa.ipc.IpcWriteOptions())
        age = (6 - seq) * 1000  # seq 1 is the oldest
        os.utime(path, (now - age, now - age))
        sizes.append(path.stat().st_size)
    (directory / (files.file_name("logs", now, 6) + ".part")).write_bytes(b"in progress")
    deleted, deleted_bytes = files.apply_retention(directory, max_age=3500, max_total_bytes=0, now=now)
    assert (deleted, deleted_bytes) == (2, sizes[0] + sizes[1])
    deleted, deleted_bytes = files.apply_retention(
        directory, max_age=0, max_total_bytes=sizes[3] + sizes[4], now=now)
    assert (deleted, deleted_bytes) == (1, sizes[2])
    remaining = sorted(p.name for p in directory.iterdir())
    assert [files.sequence_of(n) for n in remaining] == [4, 5, 6]  # the file in progress is never touched


def test_retention_runs_after_rotation(make_writer, tmp_path):
    writer = make_writer(write_interval=60, retention_max_total_bytes=1)
    for _ in range(3):
        push(writer.buffer, range(10))
        writer.rotate()
    status = writer.status()
    assert status["files_rotated"] == 3
    assert status["files_deleted"] == 3
    assert completed(tmp_path / "traces") == []


def test_a_failed_write_is_retried_without_loss_or_duplicates(make_writer, tmp_path, monkeypatch):
    """Fault injection: the disk fails after the first batch of a write reached the file."""
    from otlpd import writer as writer_module

    real_write = writer_module._OpenFile.write
    calls = []

    def failing_write(self, batch, group):
        calls.append(batch.num_rows)
        if len(calls) == 2:  # the first batch reached the file, then the disk failed
            raise OSError(28, "No space left on device")
        real_write(self, batch, group)

    monkeypatch.setattr(writer_module._OpenFile, "write", failing_write)
    monkeypatch.setattr(writer_module, "COALESCE_ROWS", 1000)
    writer = make_writer(write_interval=60)
    for start in range(0, 3000, 1000):  # three batches of 1000 rows: written as they are
        push(writer.buffer, range(start, start + 1000))
    writer._wake.set()
    wait_until(lambda: writer.status().get("write_errors") == 1)
    assert calls == [1000, 1000]
    assert "No space left" in writer.status()["last_error"]
    writer.rotate()  # the retry writes the two batches that did not reach the broken file
    writer.stop()
    assert ids_in(completed(tmp_path / "traces")) == Counter(range(3000))
    assert writer.status()["written_rows"] == 3000


def test_coalesce_keeps_order_and_groups_small_batches():
    from otlpd.writer import _coalesce

    batches = [as_item(make_batch(range(start, start + 300))) for start in range(0, 3000, 300)]
    big = make_batch(range(3000, 5000))
    pending = batches + [as_item(big)]
    result = batches_of(_coalesce(pending, target_rows=1000))
    assert pending == []  # consumed as it went
    assert [batch.num_rows for batch in result] == [900, 900, 900, 300, 2000]
    assert result[-1] is big  # a batch that is large alone is not copied
    assert pa.Table.from_batches(result).column("id").to_pylist() == list(range(5000))


def test_coalesce_bounds_the_bytes_of_each_group():
    from otlpd.writer import _coalesce

    # ids of one width: every batch has the same size in bytes
    batches = [as_item(make_batch(range(start, start + 100))) for start in range(1000, 2000, 100)]
    per_batch = batches[0].nbytes
    assert {batch.nbytes for batch in batches} == {per_batch}
    result = batches_of(_coalesce(list(batches), target_rows=10_000, target_bytes=3 * per_batch))
    assert [batch.num_rows for batch in result] == [300, 300, 300, 100]
    assert pa.Table.from_batches(result).column("id").to_pylist() == list(range(1000, 2000))


def test_memory_bound_covers_the_coalescing_copy():
    from otlpd.writer import COALESCE_BYTES, split_memory_bound

    mib = 1024 * 1024
    assert split_memory_bound(256 * mib) == (224 * mib, COALESCE_BYTES)
    assert split_memory_bound(16 * mib) == (14 * mib, 2 * mib)  # 1/8 of a small bound
    assert split_memory_bound(1024 * mib) == (1024 * mib - COALESCE_BYTES, COALESCE_BYTES)
    for bound in (1, 7, 8, 1000, 3 * mib + 5):
        buffer, copy = split_memory_bound(bound)
        assert buffer >= 1 and copy >= 0 and buffer + copy == bound
    # never below the largest request: the copy shrinks, down to none
    assert split_memory_bound(64 * mib, 60 * mib) == (60 * mib, 4 * mib)
    assert split_memory_bound(64 * mib, 64 * mib) == (64 * mib, 0)


def test_coalesce_without_a_copy_budget_writes_batches_as_they_are():
    from otlpd.writer import _coalesce

    batches = [make_batch(range(start, start + 100)) for start in range(0, 500, 100)]
    result = batches_of(_coalesce([as_item(batch) for batch in batches], target_bytes=0))
    assert len(result) == 5 and all(a is b for a, b in zip(result, batches))


def test_coalesce_merges_the_decoders_chunks():
    """What the receiver buffers from the Cython decoder (Chunks) is merged natively;
    a group that also holds a RecordBatch (the reference path decodes a few unusual
    requests) is concatenated by pyarrow. The rows are the same either way."""
    from fuzz_decoder import traces_request

    from otlpd import decode, schema
    from otlpd.writer import _coalesce

    if decode.IMPLEMENTATION != "cython":
        pytest.skip("OTLPD_PURE_PYTHON=1: the protobuf decoder buffers RecordBatches, no chunks")
    requests = [traces_request(n) for n in (10, 20, 30, 40)]
    # the stored rows (resource and scope go to the sources file, not into the batch)
    expected = pa.Table.from_batches([as_item(schema.decode_traces(data)).rows for data in requests])
    decode_chunk = decode.BUFFER_DECODERS["traces"]
    merges = decode.stats()["merges"]
    result = batches_of(_coalesce([decode_chunk(data) for data in requests], target_rows=60))
    assert [batch.num_rows for batch in result] == [60, 40]  # a group of three, one alone
    assert decode.stats()["merges"] == merges + 1
    assert pa.Table.from_batches(result).equals(expected)
    mixed = [decode_chunk(requests[0]), as_item(schema.decode_traces(requests[1])), decode_chunk(requests[2])]
    result = batches_of(_coalesce(mixed, target_rows=1000))
    assert [batch.num_rows for batch in result] == [60]
    assert decode.stats()["merges"] == merges + 1
    assert pa.Table.from_batches(result).equals(expected.slice(0, 60))


def test_compression_level_changes_the_files(make_writer, tmp_path):
    """A faster zstd level writes larger files than the default, readable alike."""
    sizes = {}
    for level in (None, -5):
        writer = make_writer(directory=tmp_path / f"level{level}", compression="zstd", compression_level=level)
        for start in range(0, 20_000, 2000):
            push(writer.buffer, range(start * 7919 % 10**6, start * 7919 % 10**6 + 2000))
        writer.stop()
        assert sum(ids_in(completed(tmp_path / f"level{level}")).values()) == 20_000
        sizes[level] = sum(path.stat().st_size for path in completed(tmp_path / f"level{level}"))
    assert sizes[-5] > sizes[None]
