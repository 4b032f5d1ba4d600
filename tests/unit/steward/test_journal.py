"""The decision journal: on disk before acknowledged, in order, a torn tail cut off, damage named, one writer."""

import errno
import json
import os
import threading
import time

import pytest

from steward.journal import Journal, JournalError


class Sink:
    """What the journal hands on once durable, and whether each entry was on disk when it was handed on."""

    def __init__(self, directory):
        self.directory = directory
        self.groups: list[list[tuple[int, dict]]] = []

    def __call__(self, numbered):
        on_disk = b"".join(p.read_bytes() for p in sorted(self.directory.glob("*.jsonl")))
        assert all(json.dumps(entry, separators=(",", ":")).encode() in on_disk for _, entry in numbered)
        self.groups.append(numbered)

    @property
    def seqs(self):
        return [seq for group in self.groups for seq, _ in group]


def _open(directory, **kwargs):
    sink = Sink(directory)
    return Journal(directory, durable=sink, **kwargs), sink


def test_an_entry_is_on_disk_and_handed_on_before_append_returns(tmp_path):
    journal, sink = _open(tmp_path)
    for n in range(3):
        journal.append([{"n": n}])
        assert sink.seqs == list(range(1, n + 2))  # handed on before the caller hears
    journal.close()
    again, _ = _open(tmp_path)
    assert again.recovered == [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2})] and again.id == journal.id
    again.close()


def test_concurrent_appends_share_fsyncs_and_keep_one_gapless_order(tmp_path, monkeypatch):
    fsyncs = []
    real = os.fsync

    def slow_fsync(fd):
        fsyncs.append(fd)
        time.sleep(0.005)  # a slow disk: callers queue up behind one write
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    journal, sink = _open(tmp_path)
    threads = [
        threading.Thread(target=lambda t=t: [journal.append([{"n": t * 1000 + i}]) for i in range(50)])
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    assert sink.seqs == list(range(1, 401))
    assert len(sink.groups) <= 200  # 400 entries, at most half as many writes: they were grouped
    again, _ = _open(tmp_path)
    assert sorted(e["n"] for _, e in again.recovered) == sorted(t * 1000 + i for t in range(8) for i in range(50))
    again.close()


def test_a_torn_last_line_was_never_acknowledged_and_is_cut_off(tmp_path):
    journal, _ = _open(tmp_path)
    journal.append([{"n": 1}, {"n": 2}])
    journal.close()
    segment = next(tmp_path.glob("*.jsonl"))
    whole = segment.read_bytes()
    with segment.open("ab") as f:
        f.write(b'3\t0badc0de\t{"n":')  # killed in the middle of a write
    again, sink = _open(tmp_path)
    assert [seq for seq, _ in again.recovered] == [1, 2] and segment.read_bytes() == whole
    again.append([{"n": 3}])
    assert sink.seqs == [3]
    again.close()


def test_a_damaged_line_inside_the_journal_is_named_and_the_journal_kept(tmp_path):
    journal, _ = _open(tmp_path)
    journal.append([{"n": 1}, {"n": 2}, {"n": 3}])
    journal.close()
    segment = next(tmp_path.glob("*.jsonl"))
    damaged = segment.read_bytes().replace(b'{"n":2}', b'{"n":7}')
    segment.write_bytes(damaged)
    with pytest.raises(JournalError, match=rf"{segment.name} is damaged at line 2: its checksum does not match"):
        _open(tmp_path)
    assert segment.read_bytes() == damaged


def test_one_process_writes_a_journal(tmp_path):
    journal, _ = _open(tmp_path)
    with pytest.raises(JournalError, match="in use by another process"):
        _open(tmp_path)
    journal.close()
    _open(tmp_path)[0].close()


def test_a_write_the_disk_refuses_is_not_acknowledged_and_leaves_no_trace(tmp_path, monkeypatch):
    journal, sink = _open(tmp_path)
    journal.append([{"n": 1}])
    real = os.write

    def full(fd, data):
        real(fd, data[: len(data) // 2])  # half of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(JournalError, match=r"could not be written: .*No space left on device"):
        journal.append([{"n": 2}])
    monkeypatch.setattr(os, "write", real)
    journal.append([{"n": 3}])
    journal.close()
    again, _ = _open(tmp_path)
    assert again.recovered == [(1, {"n": 1}), (2, {"n": 3})] and sink.seqs == [1, 2]
    again.close()


def test_segments_rotate_and_shipped_ones_are_deleted_without_the_numbering_going_back(tmp_path):
    journal, sink = _open(tmp_path, segment_bytes=64)
    for n in range(6):
        journal.append([{"n": n, "pad": "x" * 40}])  # one line passes 64 bytes: a segment each
    starts = sorted(int(p.stem) for p in tmp_path.glob("*.jsonl"))
    assert starts == [1, 2, 3, 4, 5, 6, 7]  # the seventh is the empty current one
    journal.shipped(4)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.jsonl")) == [5, 6, 7]
    journal.shipped(6)
    journal.close()
    assert sorted(int(p.stem) for p in tmp_path.glob("*.jsonl")) == [7]
    again, sink = _open(tmp_path, segment_bytes=64)
    assert again.recovered == []
    again.append([{"n": 6}])
    assert sink.seqs == [7]  # never a number already shipped
    again.close()


def _held(directory) -> str:
    return "".join(p.read_text() for p in directory.glob("*.jsonl"))


def test_a_quiet_journal_lets_its_shipped_entries_go_once_its_segment_is_old(tmp_path):
    journal, _ = _open(tmp_path, segment_seconds=0.2)
    journal.append([{"who": "ANNA"}, {"who": "BEN"}])
    journal.shipped(2)  # shipped, but the segment is young: it stays (the next writes go on in it)
    assert "ANNA" in _held(tmp_path)
    time.sleep(0.25)
    journal.shipped(1)  # old, but BEN is not in the database yet: nothing may go
    assert "BEN" in _held(tmp_path)
    journal.shipped(2)  # old and wholly shipped: a new segment starts and the old one is deleted
    assert _held(tmp_path) == "" and sorted(int(p.stem) for p in tmp_path.glob("*.jsonl")) == [3]
    journal.append([{"who": "CARL"}])
    journal.close()
    again, _ = _open(tmp_path, segment_seconds=60)
    assert [entry for _, entry in again.recovered] == [{"who": "CARL"}]  # numbering and recovery intact
    again.shipped(3)  # a segment an earlier process left is of unknown age: it goes once shipped
    assert _held(tmp_path) == ""
    again.close()


def test_a_journal_that_cannot_hand_entries_on_stops_taking_them(tmp_path):
    def refuse(numbered):
        raise MemoryError("no room for the buffer")

    journal = Journal(tmp_path, durable=refuse)
    with pytest.raises(JournalError, match=r"stopped taking decisions .*a restart ships what it holds"):
        journal.append([{"n": 1}])
    with pytest.raises(JournalError, match="stopped taking decisions"):
        journal.append([{"n": 2}])
    journal.close()
    again, _ = _open(tmp_path)
    assert again.recovered == [(1, {"n": 1})]
    again.close()
