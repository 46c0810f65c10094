from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from mission_control import startup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mission_control.settings")
application = get_wsgi_application()
startup.freeze_startup_objects()
