"""A typical app (as of migration 0002: 0001 made the first version): FK, M2M, JSONField, DecimalField,
DateTimeField, a UniqueConstraint and indexes."""

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50, unique=True)
    slug = models.SlugField(max_length=60, null=True)

    class Meta:
        unique_together = [("name", "slug")]


class Tag(models.Model):
    label = models.CharField(max_length=60, db_index=True)


class Product(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="products")
    tags = models.ManyToManyField(Tag, related_name="products")
    title = models.CharField(max_length=100, db_index=True)
    sku = models.CharField(max_length=20)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.BigIntegerField(default=5)
    rating = models.FloatField(null=True)
    attrs = models.JSONField(default=dict)
    created = models.DateTimeField()
    note = models.TextField(default="", blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["category", "sku"], name="product_category_sku_uniq")]
        indexes = [
            models.Index(fields=["created"], name="product_created_idx"),
            models.Index(fields=["category", "-price"], name="product_cat_price_idx"),
        ]


class Order(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(default=1)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    placed = models.DateTimeField()
    day = models.DateField()

    class Meta:
        indexes = [models.Index(fields=["placed", "product"], name="order_placed_idx")]
