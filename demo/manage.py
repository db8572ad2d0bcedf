#!/usr/bin/env python
"""The demo project's manage.py: ``python demo/manage.py rundemo``, ``runserver``, ..."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Runnable from the repository root as well as from demo/.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
