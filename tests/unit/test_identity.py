"""Database identity (issue 26, item 1): the rule (identity.judge) over every combination,
and what files.py makes of it on a real SQLite file: nothing makes a database where one was,
no connection makes a file, a WAL of another database is never taken up, and a process
tells a renamed, deleted or replaced file from its own."""
from __future__ import annotations

import itertools
import os
import sqlite3

import pytest

from coffee_team.errors import DatabaseMismatch, DatabaseMissing
from coffee_team.queue import MessageQueue, files, identity
from coffee_team.queue.identity import (DELETED, RENAMED, REPLACED, SAME, Opened, Seen, judge)
from coffee_team.queue.tables import SCHEMA_VERSION

MINE, OTHER = (1, 100), (1, 200)
ID, ID2 = "a" * 32, "b" * 32


def expected(opened: Opened, seen: Seen) -> str:
    """The rule written out as a person says it, case by case."""
    ids_differ = None not in (opened.db_id, seen.db_id) and opened.db_id != seen.db_id
    if opened.file is None:  # PostgreSQL: the id is all there is
        return REPLACED if ids_differ else SAME
    if seen.file is None:
        return RENAMED if seen.links else DELETED  # a name left somewhere, or none
    if seen.file != opened.file:
        return REPLACED  # another file at the path (another database, or a copy of this one)
    return REPLACED if ids_differ else SAME  # the same file, overwritten in place or not


@pytest.mark.parametrize("opened_file,opened_id,seen_file,seen_id,links", list(itertools.product(
    (MINE, None), (ID, None), (MINE, OTHER, None), (ID, ID2, None), (0, 1, 2, None))))
def test_every_combination_is_decided(opened_file, opened_id, seen_file, seen_id, links):
    opened, seen = Opened(opened_file, opened_id), Seen(seen_file, seen_id, links)
    assert judge(opened, seen) == expected(opened, seen)
    assert judge(opened, seen) in identity.VERDICTS


def test_the_findings_cases():
    assert judge(Opened(MINE, ID), Seen(None, None, 1)) == RENAMED  # mv db moved.db
    assert judge(Opened(MINE, ID), Seen(None, None, 0)) == DELETED  # rm db
    assert judge(Opened(MINE, ID), Seen(OTHER, ID2, 0)) == REPLACED  # rm db; a new one there
    assert judge(Opened(MINE, ID), Seen(MINE, ID2, 1)) == REPLACED  # cp other.db db
    assert judge(Opened(MINE, ID), Seen(MINE, None, 1)) == SAME  # id unreadable: no evidence
    assert judge(Opened(None, ID), Seen(None, ID2, None)) == REPLACED  # PostgreSQL restored


@pytest.mark.parametrize("verdict", [RENAMED, DELETED, REPLACED])
def test_each_verdict_is_one_line_saying_what_to_do(verdict):
    line = f"{identity.describe(verdict, '/p/o.db', '/p/m.db')}; " \
           f"{identity.remedy(verdict, '/p/o.db', '/p/m.db')}"
    assert "\n" not in line and "/p/o.db" in line and verdict in line
    if verdict == RENAMED:
        assert "mv /p/m.db /p/o.db" in line


# --- on a real file ------------------------------------------------------------------------

def make(path) -> MessageQueue:
    return MessageQueue(str(path), agents=["a"])


def test_a_new_database_has_an_id_in_its_main_file_and_beside_it(tmp_path):
    path = tmp_path / "o.db"
    with make(path) as q:
        opened = q.db.opened
        assert opened.db_id and len(opened.db_id) == 32
        st = os.stat(path)
        assert opened.file == (st.st_dev, st.st_ino)
        assert files.file_id(str(path)) == opened.db_id  # without the WAL
        assert files.recorded_id(str(path)) == opened.db_id
    with make(path) as again:
        assert again.db.opened.db_id == opened.db_id  # written once, at creation
    assert make(tmp_path / "p.db").db.opened.db_id != opened.db_id


def test_an_older_database_gets_its_id_when_it_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    make(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE database_identity")
    conn.execute("UPDATE schema_version SET version = 13 WHERE version = ?", (SCHEMA_VERSION,))
    conn.commit()
    conn.close()
    os.unlink(str(path) + "-id")
    with make(path) as q:
        assert q.db.opened.db_id and files.recorded_id(str(path)) == q.db.opened.db_id


def test_nothing_but_a_creating_opener_makes_a_database_and_none_where_one_was(tmp_path):
    path = tmp_path / "o.db"
    with pytest.raises(DatabaseMissing, match="database not found"):
        MessageQueue(str(path), agents=["a"], create=False)
    assert not path.exists()
    q = make(path)
    q.send("t", "a", "x")
    os.rename(path, tmp_path / "moved.db")
    for create in (True, False):
        with pytest.raises(DatabaseMissing, match="o.db-id shows one was there"):
            MessageQueue(str(path), agents=["a"], create=create)
    assert not path.exists()
    q.close()  # SQLite leaves a moved file's WAL; the close put all of it into the file
    assert os.path.getsize(str(path) + "-wal") == 0
    with make(tmp_path / "moved.db") as moved:
        assert moved.stats()["a"]["pending"] == 1  # the renamed file kept its task
    with pytest.raises(DatabaseMissing, match="shows one was there"):  # its id record stays
        make(path)
    for leftover in tmp_path.glob("o.db-*"):
        leftover.unlink()  # afresh, as the message says
    make(path).close()


def test_a_thread_connecting_late_never_makes_a_file_at_the_path(tmp_path):
    path = tmp_path / "o.db"
    q = make(path)
    os.rename(path, tmp_path / "moved.db")
    q.backend.close()  # this thread's connection: the next statement connects again
    with pytest.raises(Exception, match="was (renamed|deleted) while open"):  # not held now
        q.stats()
    assert not path.exists()


def test_a_renamed_file_is_made_whole_under_its_new_name(tmp_path):
    path, moved = tmp_path / "o.db", tmp_path / "moved.db"
    q = make(path)
    ids = [q.send("t", "a", "x") for _ in range(5)]
    os.rename(path, moved)
    problem = q.check_file()
    assert problem.verdict == RENAMED and problem.now_at == str(moved)
    assert "mv " in str(problem)
    reader = sqlite3.connect(files.connect_uri(str(moved), read_only=True), uri=True)
    assert reader.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == len(ids)  # no WAL
    reader.close()
    os.rename(moved, path)
    assert q.check_file() is None  # back: on where it stopped
    q.send("t", "a", "x")
    q.close()


def test_a_deleted_and_a_replaced_file_are_told_apart(tmp_path):
    path = tmp_path / "o.db"
    q = make(path)
    os.unlink(path)
    assert q.check_file().verdict == DELETED
    make(tmp_path / "other.db").close()
    os.rename(tmp_path / "other.db", path)
    problem = q.check_file()
    assert problem.verdict == REPLACED and "another database" in str(problem)
    q.close()


def test_a_file_overwritten_in_place_is_another_database(tmp_path):
    path = tmp_path / "o.db"
    q = make(path)
    make(tmp_path / "other.db").close()
    with open(tmp_path / "other.db", "rb") as src, open(path, "r+b") as dst:
        dst.write(src.read())  # cp other.db o.db keeps the inode
    assert q.check_file().verdict == REPLACED
    q.backend.close()


def test_the_id_is_read_again_only_when_the_file_changed(tmp_path, monkeypatch):
    path = str(tmp_path / "o.db")
    q = make(path)
    reads = []
    real = files.file_id
    monkeypatch.setattr(files, "file_id", lambda p: reads.append(p) or real(p))
    sig = files._signature(path)
    settled = lambda: sig[4] + files.RACY_NS + 1  # noqa: E731 (the last change 1 s ago)
    assert files._id_of(path, sig, settled) == q.db.opened.db_id and len(reads) == 1
    assert files._id_of(path, sig, settled) == q.db.opened.db_id and len(reads) == 1  # unchanged
    racy = lambda: sig[4] + files.RACY_NS // 2  # noqa: E731 (changed within the clock's tick)
    files._IDS_SEEN.clear()
    files._id_of(path, sig, racy)
    files._id_of(path, sig, racy)
    assert len(reads) == 3  # not kept: a change in the same tick would keep the signature
    files._id_of(path, sig, settled)  # kept
    make(tmp_path / "other.db").close()
    with open(tmp_path / "other.db", "rb") as src, open(path, "r+b") as dst:
        dst.write(src.read())  # cp other.db o.db keeps the inode, not the mtime and ctime
    assert files._signature(path) != sig
    problem = q.check_file()
    assert reads.count(path) == 5 and problem.verdict == REPLACED
    q.backend.close()


def test_a_wal_of_another_database_is_never_taken_up(tmp_path):
    """The finding: a WAL left at the path by the database that was there must never be
    read as another file's (nor deleted by it on close)."""
    path = tmp_path / "o.db"
    q = make(path)
    q.send("t", "a", "x")
    wal = str(path) + "-wal"
    held = os.stat(wal).st_ino
    os.rename(path, tmp_path / "moved.db")
    make(tmp_path / "other.db").close()
    os.rename(tmp_path / "other.db", path)
    for create in (True, False):
        with pytest.raises(DatabaseMismatch, match="stop the team"):
            MessageQueue(str(path), agents=["a"], create=create)
    assert os.stat(wal).st_ino == held
    q.close()


def test_leftovers_of_a_database_nobody_has_open_are_no_hindrance(tmp_path):
    path = tmp_path / "o.db"
    q = make(path)
    q.send("t", "a", "x")
    os.rename(path, tmp_path / "moved.db")
    assert q.check_file().verdict == RENAMED  # the WAL into moved.db, emptied
    assert os.path.getsize(str(path) + "-wal") == 0
    make(tmp_path / "other.db").close()
    os.rename(tmp_path / "other.db", path)
    assert files.attached(str(path) + "-shm")  # q still has the old one open
    with pytest.raises(DatabaseMismatch):
        MessageQueue(str(path), agents=["a"], create=False)
    q.close()
    assert not files.attached(str(path) + "-shm")
    with MessageQueue(str(path), agents=["a"], create=False) as new:  # the team restarted
        assert files.recorded_id(str(path)) == new.db.opened.db_id
        assert new.stats() == {}
    with make(tmp_path / "moved.db") as moved:
        assert moved.stats()["a"]["pending"] == 1


def test_a_copy_of_the_same_database_is_not_opened_while_the_old_one_is(tmp_path):
    """Same id, another file: its pages and the old file's WAL do not go together."""
    path = tmp_path / "o.db"
    q = make(path)
    q.send("t", "a", "x")
    import shutil
    shutil.copy(path, tmp_path / "copy.db")
    os.rename(tmp_path / "copy.db", path)
    with pytest.raises(DatabaseMismatch, match="stop the team"):
        MessageQueue(str(path), agents=["a"], create=False)
    q.backend.close()


def test_a_data_directory_copied_with_its_wal_opens_where_it_was_copied(tmp_path):
    """The WAL beside a copy of the same database (not attached anywhere) is its own."""
    import shutil
    src, dst = tmp_path / "a", tmp_path / "b"
    src.mkdir()
    q = make(src / "o.db")
    task = q.send("t", "a", "x")
    for name in os.listdir(src):  # while open: the WAL holds the task
        shutil.copy(src / name, tmp_path / name)
    q.close()
    dst.mkdir()
    for name in ("o.db", "o.db-wal", "o.db-id"):
        shutil.copy(tmp_path / name, dst / name)
    assert os.path.getsize(dst / "o.db-wal") > 0
    with MessageQueue(str(dst / "o.db"), agents=["a"], create=False) as copy:
        assert copy.get_task(task)["status"] == "pending"
        assert files.recorded(str(dst / "o.db")).file == copy.db.opened.file  # its own now
