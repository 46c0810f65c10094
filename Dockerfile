# Production image: gunicorn + whitenoise. The same image runs `web`,
# `run_orchestrator`, `qcluster` and one-shot `migrate` (see docs and README).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN groupadd --system app && useradd --system --gid app --home /app --shell /usr/sbin/nologin app

COPY pyproject.toml requirements.lock ./
COPY mission_control ./mission_control
COPY registry ./registry
COPY orchestrator ./orchestrator
COPY localnode ./localnode
COPY dashboard ./dashboard
RUN pip install -c requirements.lock .

COPY manage.py ./
COPY templates ./templates
COPY static ./static
# collectstatic needs settings, not secrets: a throwaway key used only at build time.
RUN SECRET_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R app:app /app/var

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "mission_control.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60", "--access-logfile", "-"]
