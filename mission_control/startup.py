"""What a long-running process does once it has started: move the objects start-up
created (modules, models, URL patterns, serializers) out of the garbage collector's
reach.

CPython's full (generation 2) collection walks every tracked object. After Django's
start-up that is about 130,000 of them, and a full collection took ~50 ms with the GIL
held: a request that met one answered in 70-80 ms instead of 6 (`bench.scale`'s mission
detail), and every engine thread stood still for as long. `gc.freeze()` moves the
objects alive now to a permanent generation that collections skip; what is created
later is collected as before. Called by `wsgi.py`, `asgi.py` and `run_orchestrator`
(every engine process)."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Load the URLconf (its views and serializers come with it), collect what start-up
    left as garbage, then freeze the rest; returns how many objects are frozen."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imported for its side effect)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
