"""The models the SQLAlchemy tests share: declarative classes with a foreign key, relationships, unique
constraints, an index, and the column types whose values a driver must carry intact (Numeric, DateTime,
LargeBinary, BigInteger)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    joined: Mapped[dt.datetime] = mapped_column(DateTime)
    books: Mapped[list[Book]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "book"
    __table_args__ = (UniqueConstraint("author_id", "title"), Index("ix_book_price", "price"))
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    isbn: Mapped[int] = mapped_column(BigInteger)
    cover: Mapped[bytes | None] = mapped_column(LargeBinary)
    author: Mapped[Author] = relationship(back_populates="books")


JOINED = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
COVER = bytes(range(256)) * 4


def a_book(title: str, price: str = "9.99", isbn: int = 2**62 + 7) -> Book:
    return Book(title=title, price=Decimal(price), isbn=isbn, cover=COVER)
