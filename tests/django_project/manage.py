#!/usr/bin/env python
"""manage.py of the Django project the Django test runs against a node and against PostgreSQL 15."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
