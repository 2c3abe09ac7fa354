# One image for web, worker and beat (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PERFPILOT_VAR_DIR=/app/var
WORKDIR /app

COPY pyproject.toml scripts/requirements.py ./
RUN python requirements.py > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && useradd --system --create-home --uid 10001 perfpilot

COPY . .
# Static files are collected at build time; the database is not needed for that.
RUN DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost:6379/0 SECRET_KEY=build \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var && chown -R perfpilot /app/var

USER perfpilot
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "2", "--threads", "4", "--worker-connections", "16", "--config", "python:config.gunicorn", "--no-control-socket", \
     "--access-logfile", "-"]
