"""Settings: the stock PostgreSQL backend (psycopg 3), the database named by the DJ_PG_* environment."""

import os

SECRET_KEY = "test-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["DJ_PG_HOST"],
        "PORT": os.environ["DJ_PG_PORT"],
        "NAME": os.environ["DJ_PG_NAME"],
        "USER": os.environ["DJ_PG_USER"],
        "PASSWORD": os.environ["DJ_PG_PASSWORD"],
        # DJ_SERVER_SIDE_BINDING=1: parameters travel apart from the SQL (extended protocol), else psycopg
        # binds them into the text (Django's default)
        "OPTIONS": {
            "sslmode": "disable",
            "server_side_binding": os.environ.get("DJ_SERVER_SIDE_BINDING") == "1",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIGRATION_MODULES = {"shop": os.environ.get("DJ_SHOP_MIGRATIONS", "shop.migrations")}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]
