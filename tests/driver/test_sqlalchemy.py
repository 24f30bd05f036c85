"""The ``sqlite+ha`` dialect with SQLAlchemy's ORM and Core, over the real embedded driver: models, sessions,
transactions and savepoints, executemany, reflection, URL handling; and two engines replicating through one
real nats-server."""

from __future__ import annotations

import datetime as dt
import threading
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Engine,
    MetaData,
    create_engine,
    event,
    exc,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from sqlite_ha.sqlalchemy import SQLiteHADialect
from sqlite_ha.testing import TEST_CLUSTER_SECRET, wait_for
from tests.driver.sqla import ENTRY_POINT, LOCAL, dispose, ensure_registered, running_nats, url
from tests.driver.sqla_models import COVER, JOINED, Author, Base, Book, a_book

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _dialect() -> None:
    ensure_registered()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(url(tmp_path / "app.db", **LOCAL, _fk="1"))  # SQLite's foreign keys on
    Base.metadata.create_all(engine)
    yield engine
    dispose(engine)


def titles(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Book.title).order_by(Book.title)))


# ---------------------------------------------------------------------------------------------- the URL


def test_the_entry_point_is_declared_and_names_the_dialect() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = project["entry-points"]["sqlalchemy.dialects"]
    assert declared == {
        ENTRY_POINT: "sqlite_ha.sqlalchemy:SQLiteHADialect",
        "sqlite.ha_async": "sqlite_ha.sqlalchemy:SQLiteHAAsyncDialect",
    }
    assert any(dep.startswith("sqlalchemy") for dep in project["optional-dependencies"]["sqlalchemy"])
    assert isinstance(make_url("sqlite+ha:///x.db").get_dialect()(), SQLiteHADialect)


def test_the_url_path_is_the_file_and_its_query_the_driver_options(tmp_path: Path) -> None:
    dialect = SQLiteHADialect()
    args, kwargs = dialect.create_connect_args(
        make_url("sqlite+ha:///rel/app.db?replicationURL=nats://h:4222&name=n1&timeout=2.5")
    )
    assert args == [str(Path.cwd() / "rel" / "app.db")]
    assert kwargs == {"replicationURL": "nats://h:4222", "name": "n1", "timeout": 2.5}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("sqlite+ha://user@host/app.db", "names no host or user"),
        ("sqlite+ha://", "needs a database file"),
        ("sqlite+ha:///:memory:", "needs a database file"),
        ("sqlite+ha:///app.db?name=a&name=b", "'name' is given 2 times"),
        ("sqlite+ha:///app.db?timeout=soon", "timeout='soon': not a number"),
        ("sqlite+ha:///app.db?check_same_thread=perhaps", "not a boolean"),
    ],
)
def test_a_bad_url_is_refused_with_its_reason(bad: str, message: str) -> None:
    with pytest.raises(exc.ArgumentError, match=message):
        SQLiteHADialect().create_connect_args(make_url(bad))


def test_an_unknown_option_is_refused_by_name(tmp_path: Path) -> None:
    engine = create_engine(url(tmp_path / "app.db", replicationUri="nats://h:4222"))
    with pytest.raises(exc.DBAPIError, match="replicationUri"):
        engine.connect()
    assert not (tmp_path / "app.db").exists()  # refused before anything was opened


def test_the_pool_reuses_driver_connections(engine: Engine) -> None:
    assert isinstance(engine.pool, QueuePool)
    with engine.connect() as conn:
        first = conn.connection.dbapi_connection
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is first


def test_dispose_leaves_the_node_to_the_other_engines_of_the_file(engine: Engine, tmp_path: Path) -> None:
    other = create_engine(url(tmp_path / "app.db", **LOCAL, _fk="1"))
    with other.connect() as conn:
        node = conn.connection.dbapi_connection.connector  # type: ignore[union-attr]
    with engine.begin() as conn:
        conn.execute(insert(Author).values(name="before", joined=JOINED))
    other.dispose()
    with engine.connect() as conn:  # the same node, still running
        assert conn.connection.dbapi_connection.connector is node  # type: ignore[union-attr]
        assert conn.scalar(select(Author.name)) == "before"


def test_the_engine_reconnects_after_its_node_was_closed(engine: Engine) -> None:
    """``connector.close()`` (or ``sqlite_ha.shutdown()``) under a pooled engine: its connections are closed
    ones ("Cannot operate on a closed database."), which the dialect counts as a disconnect; the pool drops
    them and the next checkout opens the node again."""
    with engine.connect() as conn:
        conn.execute(insert(Author).values(name="kept", joined=JOINED))
        conn.commit()
        conn.connection.dbapi_connection.connector.close()  # type: ignore[union-attr]
        with pytest.raises(exc.DBAPIError) as e:
            conn.scalar(select(Author.name))
        assert e.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.scalar(select(Author.name)) == "kept"
    pinging = create_engine(engine.url, pool_pre_ping=True)
    try:
        with pinging.connect() as conn:
            conn.connection.dbapi_connection.connector.close()  # type: ignore[union-attr]
        with pinging.connect() as conn:  # the ping finds the connection closed: a new one, transparently
            assert conn.scalar(select(Author.name)) == "kept"
    finally:
        dispose(pinging)


# ---------------------------------------------------------------------------------------------- the ORM


def test_models_round_trip_with_their_types(engine: Engine) -> None:
    with Session(engine) as session:
        author = Author(name="Ursula", joined=JOINED, books=[a_book("Earthsea", "12.50"), a_book("Lathe")])
        session.add(author)
        session.commit()
        author_id = author.id
    with Session(engine) as session:
        got = session.get_one(Author, author_id)
        assert (got.name, got.joined) == ("Ursula", JOINED)
        books = sorted(got.books, key=lambda b: b.title)
        assert [(b.title, b.price, b.isbn, b.cover) for b in books] == [
            ("Earthsea", Decimal("12.50"), 2**62 + 7, COVER),
            ("Lathe", Decimal("9.99"), 2**62 + 7, COVER),
        ]
        assert isinstance(books[0].price, Decimal)
        assert books[0].author is got


def test_update_delete_and_cascade(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Author(name="A", joined=JOINED, books=[a_book("one"), a_book("two")]))
        session.commit()
    with Session(engine) as session:
        book = session.scalars(select(Book).where(Book.title == "one")).one()
        book.price = Decimal("1.05")
        session.commit()
        assert session.scalars(select(Book.price).where(Book.title == "one")).one() == Decimal("1.05")
        session.delete(session.scalars(select(Author)).one())
        session.commit()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Book)) == 0
        assert session.scalar(select(func.count()).select_from(Author)) == 0


def test_rollback_forgets_flushed_rows(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Author(name="kept", joined=JOINED))
        session.commit()
        session.add(Author(name="dropped", joined=JOINED, books=[a_book("gone")]))
        session.flush()  # written inside the transaction: the driver has begun it
        assert session.scalar(select(func.count()).select_from(Author)) == 2
        session.rollback()
    with Session(engine) as session:
        assert list(session.scalars(select(Author.name))) == ["kept"]
    assert titles(engine) == []


def test_a_unique_violation_is_an_integrity_error_and_the_session_recovers(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Author(name="same", joined=JOINED))
        session.commit()
        session.add(Author(name="same", joined=JOINED))
        with pytest.raises(exc.IntegrityError, match=r"UNIQUE constraint failed: author\.name"):
            session.commit()
        session.rollback()
        session.add(Author(name="other", joined=JOINED))
        session.commit()
        assert sorted(session.scalars(select(Author.name))) == ["other", "same"]


def test_foreign_keys_are_enforced_with_fk_1(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Book(author_id=404, title="orphan", price=Decimal(1), isbn=1))
        with pytest.raises(exc.IntegrityError, match="FOREIGN KEY constraint failed"):
            session.commit()


def test_a_savepoint_rolled_back_keeps_the_rest_of_the_transaction(engine: Engine) -> None:
    with Session(engine) as session:
        author = Author(name="A", joined=JOINED)
        session.add(author)
        session.flush()
        nested = session.begin_nested()
        author.books.append(a_book("inner"))
        session.flush()
        nested.rollback()
        author.books.append(a_book("outer"))
        session.commit()
    assert titles(engine) == ["outer"]


def test_a_released_savepoint_is_undone_by_the_enclosing_rollback(engine: Engine) -> None:
    """The pysqlite SAVEPOINT problem: a savepoint opened before any write must not commit on release."""
    with engine.connect() as conn:
        author_id = conn.execute(insert(Author).values(name="A", joined=JOINED)).inserted_primary_key[0]
        conn.commit()
        with conn.begin():
            with conn.begin_nested():  # the first statement of the transaction
                conn.execute(
                    insert(Book).values(author_id=author_id, title="released", price=1, isbn=1, cover=b"")
                )
            assert conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
            conn.rollback()
    assert titles(engine) == []


def test_a_session_with_begin_nested_first(engine: Engine) -> None:
    with Session(engine) as session:
        with session.begin_nested():
            session.add(Author(name="in savepoint", joined=JOINED))
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Author)) == 0
        with session.begin_nested():
            session.add(Author(name="kept", joined=JOINED))
        session.commit()
    with Session(engine) as session:
        assert list(session.scalars(select(Author.name))) == ["kept"]


def test_autocommit_isolation_level(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert conn.get_isolation_level() == "AUTOCOMMIT"
        conn.execute(insert(Author).values(name="at once", joined=JOINED))
        conn.rollback()  # nothing to roll back: the write was committed on its own
        with engine.connect() as other:
            assert other.scalar(select(Author.name)) == "at once"
    with engine.connect() as conn:  # the pool gave the connection back with the engine's default level
        assert conn.get_isolation_level() == "SERIALIZABLE"
        conn.execute(insert(Author).values(name="pending", joined=JOINED))
        conn.rollback()
        assert list(conn.scalars(select(Author.name))) == ["at once"]


def test_the_begin_recipe_of_sqlalchemys_sqlite_docs_works(tmp_path: Path) -> None:
    """SQLAlchemy's documented recipe for SERIALIZABLE reads: the driver's implicit BEGIN off, BEGIN at the
    start of every transaction; savepoints then sit in that transaction without a second BEGIN."""
    engine = create_engine(url(tmp_path / "app.db", **LOCAL))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            with session.begin_nested():
                session.add(Author(name="nested", joined=JOINED))
            session.add(Author(name="outer", joined=JOINED))
            session.rollback()
            session.add(Author(name="kept", joined=JOINED))
            session.commit()
        with Session(engine) as session:
            assert list(session.scalars(select(Author.name))) == ["kept"]
    finally:
        dispose(engine)


def test_sessions_in_threads_share_the_pool_and_the_writer(engine: Engine) -> None:
    """A web app's shape: threads, each with its own sessions, checking connections out of one pool. Their
    transactions take turns at the database's writer; none is lost, none fails."""
    with Session(engine) as session:
        session.add(Author(name="shared", joined=JOINED))
        session.commit()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(15):
                with Session(engine) as session:
                    author = session.scalars(select(Author).where(Author.name == "shared")).one()
                    author.books.append(a_book(f"w{worker}-{i:02}"))
                    session.commit()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]  # more than pool_size (5)
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(titles(engine)) == 6 * 15
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- Core


def test_core_executemany_and_insertmanyvalues(engine: Engine) -> None:
    with engine.begin() as conn:
        author_id = conn.execute(insert(Author).values(name="many", joined=JOINED)).inserted_primary_key[0]
        rows = [
            {"author_id": author_id, "title": f"t{i:03}", "price": Decimal(i) / 100, "isbn": i, "cover": None}
            for i in range(300)
        ]
        assert conn.execute(insert(Book), rows).rowcount == 300  # DB-API executemany
        returned = conn.execute(
            insert(Book).returning(Book.id, Book.title, sort_by_parameter_order=True),
            [{**r, "title": f"r{i:03}"} for i, r in enumerate(rows[:50])],
        ).all()
        assert [t for _, t in returned] == [f"r{i:03}" for i in range(50)]
        assert len({i for i, _ in returned}) == 50
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Book)) == 350
        assert conn.scalar(select(Book.price).where(Book.title == "t150")) == Decimal("1.50")


def test_reflection(engine: Engine) -> None:
    inspector = inspect(engine)
    assert sorted(inspector.get_table_names()) == ["author", "book"]  # not the node's own _ha_* tables
    internal = set(inspector.get_table_names(sqlite_include_internal=True)) - {"author", "book"}
    assert internal
    assert all(name.startswith("_ha_") for name in internal)
    reflected = MetaData()
    reflected.reflect(engine)
    assert sorted(reflected.tables) == ["author", "book"]
    columns = {c["name"]: c for c in inspector.get_columns("book")}
    assert list(columns) == ["id", "author_id", "title", "price", "isbn", "cover"]
    assert str(columns["price"]["type"]) == "NUMERIC(10, 2)"
    assert str(columns["isbn"]["type"]) == "BIGINT"
    assert columns["title"]["nullable"] is False
    assert columns["cover"]["nullable"] is True
    assert inspector.get_pk_constraint("book")["constrained_columns"] == ["id"]
    (fk,) = inspector.get_foreign_keys("book")
    assert (fk["referred_table"], fk["constrained_columns"], fk["referred_columns"]) == (
        "author",
        ["author_id"],
        ["id"],
    )
    assert [i["name"] for i in inspector.get_indexes("book")] == ["ix_book_price"]
    uniques = inspector.get_unique_constraints("book")
    assert [u["column_names"] for u in uniques] == [["author_id", "title"]]
    assert [u["column_names"] for u in inspector.get_unique_constraints("author")] == [["name"]]


# ---------------------------------------------------------------------------------------------- replication


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_nats(tmp_path_factory.mktemp("nats")) as url:
        yield url


def test_two_engines_replicate_through_nats(
    tmp_path: Path, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines, two files named alike (one database of the cluster), two node names, one stream: what
    the ORM commits through one is read through the other, types intact, and so back."""
    monkeypatch.setenv("HA_CLUSTER_SECRET", TEST_CLUSTER_SECRET)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    one = create_engine(url(tmp_path / "n1" / "app.db", name="n1", replicationURL=nats_url))
    two = create_engine(url(tmp_path / "n2" / "app.db", name="n2", replicationURL=nats_url))
    try:
        Base.metadata.create_all(one)  # the schema replicates too
        wait_for(lambda: sorted(inspect(two).get_table_names()) == ["author", "book"], 30, "the schema on n2")

        with Session(one) as session:
            session.add(Author(name="Ursula", joined=JOINED, books=[a_book("Earthsea", "12.50")]))
            session.commit()

        def on_two() -> list[tuple[str, dt.datetime, str, Decimal, int, bytes | None]]:
            with Session(two) as session:
                rows = session.execute(
                    select(Author.name, Author.joined, Book.title, Book.price, Book.isbn, Book.cover).join(
                        Author.books
                    )
                )
                return [tuple(row) for row in rows]  # type: ignore[misc]

        wait_for(lambda: bool(on_two()), 30, "the row committed on n1 to be read on n2")
        assert on_two() == [("Ursula", JOINED, "Earthsea", Decimal("12.50"), 2**62 + 7, COVER)]

        with Session(two) as session:
            session.scalars(select(Book)).one().price = Decimal("7.25")
            session.commit()
        wait_for(lambda: titles_and_prices(one) == [("Earthsea", Decimal("7.25"))], 30, "n2's update on n1")
    finally:
        dispose(one)
        dispose(two)


def titles_and_prices(engine: Engine) -> list[tuple[str, Decimal]]:
    with Session(engine) as session:
        return [(t, p) for t, p in session.execute(select(Book.title, Book.price))]
