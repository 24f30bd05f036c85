"""Run the ORM over the shop app and print one line per check, so the lines of two databases can be compared.

The same command runs against real PostgreSQL 15 and against a node; the test compares the printed lines.
Nothing printed may depend on a database's choices that PostgreSQL leaves open (generated ids, order
without ORDER BY): rows are named by natural keys and every list is ordered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.db.models import Avg, Count, Exists, F, Max, Min, OuterRef, Q, Sum, Value, Window
from django.db.models.functions import (
    Coalesce,
    ExtractDay,
    ExtractHour,
    ExtractIsoYear,
    ExtractMonth,
    ExtractQuarter,
    ExtractWeek,
    ExtractWeekDay,
    ExtractYear,
    Lower,
    RowNumber,
    TruncDate,
    TruncDay,
    TruncHour,
    TruncMonth,
    TruncQuarter,
    TruncWeek,
    TruncYear,
    Upper,
)

from shop.models import Category, Order, Product, Tag

UTC = dt.UTC


def show(value: Any) -> str:
    """A stable text for a value: Decimals with their exponent, datetimes in UTC ISO form, dicts sorted."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=show)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else "naive:" + value.isoformat()
    return repr(value)


class Command(BaseCommand):
    help = "Exercise the ORM over the shop app and print one comparable line per check."

    def check_(self, label: str, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except Exception as e:  # the line shows the failure; the other checks still run
            code = getattr(getattr(e, "__cause__", None), "sqlstate", None)
            # the class and SQLSTATE: the messages are the database's own words
            self.stdout.write(f"{label}: ERROR {type(e).__name__} {code}")
            return
        self.stdout.write(f"{label}: {show(result)}")

    def handle(self, *args: Any, **options: Any) -> None:
        c = self.check_
        c("setup", self.setup)
        c("count", lambda: (Category.objects.count(), Tag.objects.count(), Product.objects.count()))
        c("order_count", lambda: Order.objects.count())
        self.reads()
        self.dates()
        self.json()
        self.writes()
        self.cursors()
        self.transactions()

    def setup(self) -> str:
        Order.objects.all().delete()
        Product.objects.all().delete()
        Tag.objects.all().delete()
        Category.objects.all().delete()
        cats = Category.objects.bulk_create(
            [Category(name=n, slug=n.lower()) for n in ("Books", "Games", "Tools", "Empty")]
        )
        tags = Tag.objects.bulk_create([Tag(label=label) for label in ("new", "sale", "100%_off", "Ünïcode")])
        base = dt.datetime(2024, 1, 31, 22, 30, 15, 123456, tzinfo=UTC)
        products = []
        for i in range(12):
            products.append(
                Product(
                    category=cats[i % 3],
                    title=f"Item {i:02d}" + (" special" if i % 5 == 0 else ""),
                    sku=f"SKU-{i}",
                    price=Decimal("9.99") + Decimal(i) * Decimal("10.10"),
                    stock=i * 3,
                    rating=None if i % 4 == 0 else i / 3,
                    attrs={
                        "color": ["red", "green", "blue"][i % 3],
                        "size": i,
                        "dims": {"w": i, "h": [1, 2, i]},
                        **({"promo": True} if i % 2 else {}),
                        **({"tags": ["a", "b"]} if i % 3 == 0 else {}),
                    },
                    created=base + dt.timedelta(days=i * 17, hours=i * 5, microseconds=i),
                    note="" if i % 2 else f"note with 50% off_{i}",
                    active=i % 6 != 0,
                )
            )
        made = Product.objects.bulk_create(products)
        for i, p in enumerate(made):
            p.tags.set([t for j, t in enumerate(tags) if (i + j) % 3 == 0])
        for i, p in enumerate(made[:8]):
            for k in range(i % 3 + 1):
                Order.objects.create(
                    product=p,
                    quantity=k + 1,
                    amount=p.price * (k + 1),
                    placed=p.created + dt.timedelta(days=k, minutes=7),
                    day=(p.created + dt.timedelta(days=k)).date(),
                )
        return "ok"

    def reads(self) -> None:
        c = self.check_
        c("titles", lambda: list(Product.objects.order_by("title").values_list("title", flat=True)))
        c("get", lambda: Product.objects.get(sku="SKU-3").title)
        c(
            "filter_price",
            lambda: list(Product.objects.filter(price__gt=50).order_by("sku").values_list("sku", "price")),
        )
        c(
            "select_related",
            lambda: [
                (p.sku, p.category.name) for p in Product.objects.select_related("category").order_by("-sku")
            ],
        )
        c(
            "prefetch_related",
            lambda: [
                (p.sku, sorted(t.label for t in p.tags.all()))
                for p in Product.objects.prefetch_related("tags").order_by("sku")
            ],
        )
        c(
            "reverse_prefetch",
            lambda: [
                (cat.name, sorted(p.sku for p in cat.products.all()))
                for cat in Category.objects.prefetch_related("products").order_by("name")
            ],
        )
        c(
            "m2m_filter",
            lambda: sorted(Product.objects.filter(tags__label="sale").values_list("sku", flat=True)),
        )
        c(
            "sum_avg",
            lambda: Product.objects.aggregate(
                s=Sum("price"), a=Avg("price"), mx=Max("price"), mn=Min("price")
            ),
        )
        c("order_sum", lambda: Order.objects.aggregate(s=Sum("amount"), q=Sum("quantity"), a=Avg("amount")))
        c(
            "group_by",
            lambda: list(
                Product.objects.values("category__name")
                .annotate(n=Count("id"), total=Sum("price"), avg_rating=Avg("rating"))
                .order_by("category__name")
            ),
        )
        c(
            "count_filter",
            lambda: list(
                Category.objects.annotate(
                    n=Count("products"), cheap=Count("products", filter=Q(products__price__lt=40))
                )
                .order_by("name")
                .values_list("name", "n", "cheap")
            ),
        )
        c(
            "icontains",
            lambda: sorted(Product.objects.filter(title__icontains="SPECIAL").values_list("sku", flat=True)),
        )
        c(
            "iexact",
            lambda: sorted(Category.objects.filter(name__iexact="bOoKs").values_list("name", flat=True)),
        )
        c(
            "startswith",
            lambda: sorted(Product.objects.filter(title__startswith="Item 1").values_list("sku", flat=True)),
        )
        c(
            "istartswith",
            lambda: sorted(Product.objects.filter(title__istartswith="item 0").values_list("sku", flat=True)),
        )
        c(
            "endswith",
            lambda: sorted(Product.objects.filter(note__endswith="_10").values_list("sku", flat=True)),
        )
        c(
            "contains_percent",
            lambda: sorted(Product.objects.filter(note__contains="50%").values_list("sku", flat=True)),
        )
        c(
            "contains_underscore",
            lambda: sorted(Tag.objects.filter(label__contains="%_").values_list("label", flat=True)),
        )
        c(
            "icontains_unicode",
            lambda: sorted(Tag.objects.filter(label__icontains="ünï").values_list("label", flat=True)),
        )
        c(
            "q_or",
            lambda: sorted(
                Product.objects.filter(Q(stock__lt=4) | Q(sku="SKU-9")).values_list("sku", flat=True)
            ),
        )
        c("q_not", lambda: Product.objects.filter(~Q(category__name="Books") & Q(active=True)).count())
        c("in", lambda: sorted(Product.objects.filter(stock__in=[0, 3, 6, 99]).values_list("sku", flat=True)))
        c(
            "range",
            lambda: sorted(Product.objects.filter(price__range=(20, 60)).values_list("sku", flat=True)),
        )
        c("isnull", lambda: sorted(Product.objects.filter(rating__isnull=True).values_list("sku", flat=True)))
        c(
            "distinct",
            lambda: list(
                Product.objects.values_list("category__name", flat=True).distinct().order_by("category__name")
            ),
        )
        c(
            "nulls_first",
            lambda: list(
                Product.objects.order_by(F("rating").asc(nulls_first=True), "sku").values_list(
                    "sku", flat=True
                )
            ),
        )
        c(
            "nulls_last",
            lambda: list(
                Product.objects.order_by(F("rating").desc(nulls_last=True), "sku").values_list(
                    "sku", flat=True
                )
            ),
        )
        c(
            "lower_upper",
            lambda: list(
                Tag.objects.annotate(l=Lower("label"), u=Upper("label")).order_by("l").values_list("l", "u")
            ),
        )
        c(
            "coalesce",
            lambda: list(
                Product.objects.annotate(r=Coalesce("rating", Value(-1.0)))
                .order_by("sku")
                .values_list("r", flat=True)[:4]
            ),
        )
        c(
            "exists",
            lambda: sorted(
                Category.objects.filter(
                    Exists(Product.objects.filter(category=OuterRef("pk"), stock__gt=20))
                ).values_list("name", flat=True)
            ),
        )
        c(
            "window",
            lambda: list(
                Product.objects.annotate(
                    rn=Window(RowNumber(), partition_by=[F("category")], order_by=F("price").desc())
                )
                .order_by("sku")
                .values_list("sku", "rn")
            ),
        )
        c("slice", lambda: list(Product.objects.order_by("-price").values_list("sku", flat=True)[2:5]))
        c(
            "values_dict",
            lambda: list(
                Product.objects.filter(sku="SKU-1").values(
                    "sku", "price", "created", "stock", "rating", "active", "note"
                )
            ),
        )
        c("dates", lambda: [d.isoformat() for d in Product.objects.dates("created", "month")])
        c("datetimes", lambda: list(Product.objects.datetimes("created", "day")))

    def dates(self) -> None:
        c = self.check_
        p = Product.objects
        c("year", lambda: sorted(p.filter(created__year=2024).values_list("sku", flat=True)))
        c("month", lambda: sorted(p.filter(created__month=2).values_list("sku", flat=True)))
        c("day_gte", lambda: sorted(p.filter(created__day__gte=20).values_list("sku", flat=True)))
        c("date", lambda: sorted(p.filter(created__date=dt.date(2024, 2, 18)).values_list("sku", flat=True)))
        c(
            "date_lt",
            lambda: sorted(p.filter(created__date__lt=dt.date(2024, 3, 1)).values_list("sku", flat=True)),
        )
        c("week_day", lambda: sorted(p.filter(created__week_day=2).values_list("sku", flat=True)))
        c("iso_week_day", lambda: sorted(p.filter(created__iso_week_day=7).values_list("sku", flat=True)))
        c("week", lambda: sorted(p.filter(created__week=5).values_list("sku", flat=True)))
        c("quarter", lambda: sorted(p.filter(created__quarter=2).values_list("sku", flat=True)))
        c("hour", lambda: sorted(p.filter(created__hour=3).values_list("sku", flat=True)))
        c(
            "day_field",
            lambda: sorted(Order.objects.filter(day__year=2024, day__month=3).values_list("day", flat=True)),
        )
        c(
            "trunc_day",
            lambda: list(p.annotate(t=TruncDay("created")).order_by("sku").values_list("sku", "t")),
        )
        c(
            "trunc_month",
            lambda: list(
                p.annotate(t=TruncMonth("created")).values("t").annotate(n=Count("id")).order_by("t")
            ),
        )
        c(
            "trunc_year_week",
            lambda: list(
                p.annotate(y=TruncYear("created"), w=TruncWeek("created"))
                .order_by("sku")
                .values_list("y", "w")[:4]
            ),
        )
        c(
            "trunc_quarter_hour",
            lambda: list(
                p.annotate(q=TruncQuarter("created"), h=TruncHour("created"))
                .order_by("sku")
                .values_list("q", "h")[:4]
            ),
        )
        c(
            "trunc_date",
            lambda: list(p.annotate(d=TruncDate("created")).order_by("sku").values_list("d", flat=True)),
        )
        c(
            "extract",
            lambda: list(
                p.annotate(
                    y=ExtractYear("created"),
                    m=ExtractMonth("created"),
                    d=ExtractDay("created"),
                    wd=ExtractWeekDay("created"),
                    w=ExtractWeek("created"),
                    iy=ExtractIsoYear("created"),
                    q=ExtractQuarter("created"),
                    h=ExtractHour("created"),
                )
                .order_by("sku")
                .values_list("sku", "y", "m", "d", "wd", "w", "iy", "q", "h")
            ),
        )
        c(
            "extract_datefield",
            lambda: list(
                Order.objects.annotate(m=ExtractMonth("day"), wd=ExtractWeekDay("day"))
                .order_by("day", "quantity")
                .values_list("m", "wd")[:5]
            ),
        )
        c(
            "date_range",
            lambda: p.filter(
                created__range=(dt.datetime(2024, 2, 1, tzinfo=UTC), dt.datetime(2024, 5, 1, tzinfo=UTC))
            ).count(),
        )
        c("datetime_eq", lambda: p.get(created=dt.datetime(2024, 1, 31, 22, 30, 15, 123456, tzinfo=UTC)).sku)

    def json(self) -> None:
        c = self.check_
        p = Product.objects
        skus = lambda qs: sorted(qs.values_list("sku", flat=True))  # noqa: E731
        c("json_key", lambda: skus(p.filter(attrs__color="red")))
        c("json_nested", lambda: skus(p.filter(attrs__dims__w__gte=8)))
        c("json_index", lambda: skus(p.filter(attrs__dims__h__2=5)))
        c("json_contains", lambda: skus(p.filter(attrs__contains={"color": "green", "promo": True})))
        c(
            "json_contained_by",
            lambda: skus(p.filter(attrs__dims__contained_by={"w": 1, "h": [1, 2, 1], "x": 0})),
        )
        c("json_has_key", lambda: skus(p.filter(attrs__has_key="promo")))
        c("json_has_keys", lambda: skus(p.filter(attrs__has_keys=["promo", "tags"])))
        c("json_has_any_keys", lambda: skus(p.filter(attrs__has_any_keys=["tags", "nope"])))
        c("json_isnull", lambda: skus(p.filter(attrs__promo__isnull=True)))
        c("json_key_icontains", lambda: skus(p.filter(attrs__color__icontains="RE")))
        c(
            "json_values",
            lambda: list(p.order_by("sku").values_list("attrs__color", "attrs__dims__h", "attrs__size")[:3]),
        )
        c("json_full", lambda: p.get(sku="SKU-3").attrs)
        c("json_in", lambda: skus(p.filter(attrs__size__in=[1, 2, 3])))
        c("json_order", lambda: list(p.order_by("-attrs__size").values_list("sku", flat=True)[:3]))

    def writes(self) -> None:
        c = self.check_
        c("update_f", lambda: Product.objects.filter(category__name="Books").update(stock=F("stock") + 100))
        c("after_update_f", lambda: list(Product.objects.order_by("sku").values_list("stock", flat=True)))
        c("update_price", lambda: Product.objects.filter(sku="SKU-2").update(price=F("price") * 2))
        c("price_now", lambda: Product.objects.get(sku="SKU-2").price)
        c("get_or_create_new", lambda: Tag.objects.get_or_create(label="fresh")[1])
        c("get_or_create_old", lambda: Tag.objects.get_or_create(label="fresh")[1])
        c(
            "update_or_create",
            lambda: [
                Category.objects.update_or_create(name="Games", defaults={"slug": "games-2"})[1],
                Category.objects.update_or_create(name="Music", defaults={"slug": "music"})[1],
                list(Category.objects.order_by("name").values_list("name", "slug")),
            ],
        )

        def crud() -> Any:
            cat = Category.objects.create(name="Tmp", slug="tmp")
            prod = Product.objects.create(
                category=cat,
                title="T",
                sku="T-1",
                price=Decimal("1.05"),
                attrs={"a": [1, {"b": None}]},
                created=dt.datetime(2024, 6, 1, 12, 0, 0, 1, tzinfo=UTC),
            )
            prod.title = "T2"
            prod.save()
            fresh = Product.objects.get(pk=prod.pk)
            row = (
                fresh.title,
                fresh.price,
                fresh.attrs,
                fresh.created,
                fresh.stock,
                fresh.note,
                fresh.active,
            )
            prod.delete()
            cat.delete()
            return [row, Category.objects.filter(name="Tmp").exists()]

        c("crud", crud)
        c("delete_m2m", lambda: Product.objects.get(sku="SKU-11").tags.clear())
        c("integrity", lambda: Category.objects.create(name="Books", slug="dup"))
        c("protect", lambda: Product.objects.get(sku="SKU-0").delete())

    def cursors(self) -> None:
        c = self.check_
        c("iterator", lambda: [p.sku for p in Product.objects.order_by("sku").iterator(chunk_size=5)])
        c(
            "iterator_values",
            lambda: list(Product.objects.order_by("-sku").values_list("sku", "price").iterator(chunk_size=3)),
        )

        def in_atomic() -> Any:
            with transaction.atomic():
                skus = [p.sku for p in Product.objects.order_by("sku").iterator(chunk_size=4)]
                Tag.objects.create(label="in-tx")
            return skus

        c("iterator_atomic", in_atomic)

        def interleaved() -> Any:
            out = []
            it = Product.objects.order_by("sku").values_list("sku", flat=True).iterator(chunk_size=2)
            for i, sku in enumerate(it):
                if i % 4 == 0:
                    Tag.objects.create(label=f"during-{sku}")
                out.append(sku)
            return out

        c("iterator_while_writing", interleaved)
        c("tags_now", lambda: sorted(Tag.objects.values_list("label", flat=True)))

        def raw_cursor() -> Any:
            with connection.cursor() as cur:
                cur.execute("DECLARE c1 CURSOR FOR SELECT sku FROM shop_product ORDER BY sku")
                return "declared outside a block"

        c("declare_without_hold_in_autocommit", raw_cursor)

    def transactions(self) -> None:
        c = self.check_

        def atomic_rollback() -> Any:
            try:
                with transaction.atomic():
                    Tag.objects.create(label="rolled-back")
                    raise RuntimeError("boom")
            except RuntimeError:
                pass
            return Tag.objects.filter(label="rolled-back").exists()

        c("atomic_rollback", atomic_rollback)

        def savepoints() -> Any:
            with transaction.atomic():
                Tag.objects.create(label="outer")
                try:
                    with transaction.atomic():
                        Tag.objects.create(label="inner")
                        Category.objects.create(name="Books", slug="dup")
                except Exception as e:  # the IntegrityError of the inner block: the outer goes on
                    err = type(e).__name__
                Tag.objects.create(label="after")
            return [
                err,
                sorted(
                    Tag.objects.filter(label__in=["outer", "inner", "after"]).values_list("label", flat=True)
                ),
            ]

        c("savepoints", savepoints)

        def for_update() -> Any:
            with transaction.atomic():
                p = Product.objects.select_for_update().get(sku="SKU-4")
                p.stock += 1
                p.save(update_fields=["stock"])
            return Product.objects.get(sku="SKU-4").stock

        c("select_for_update", for_update)
        c("select_for_update_outside", lambda: list(Product.objects.select_for_update().filter(sku="SKU-4")))
        c("final_sum", lambda: Product.objects.aggregate(s=Sum("price"), st=Sum("stock")))
