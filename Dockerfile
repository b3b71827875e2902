# ifcflow: API, workers, dashboard and scheduler in one image (compose.yaml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group ifcflow \
 && mkdir -p /data \
 && chown ifcflow:ifcflow /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ifcflow ./ifcflow
COPY workers ./workers
COPY schemas ./schemas
RUN pip install .

# The committed example pipelines, with the demo models they read (written by ifcflow itself).
COPY pipelines ./pipelines
RUN ifcflow demo /app/pipelines/models

USER ifcflow
ENV IFCFLOW_DATA=/data IFCFLOW_PIPELINES=/app/pipelines
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000 9181
CMD ["ifcflow", "--help"]
