# syntax=docker/dockerfile:1
# EventPro worker image: agents, RocksDB tables and the HTTP API (`eventpro worker`).
# Configuration comes only from EVENTPRO_* variables at run time; no secret is baked in.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eventpro ./eventpro
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EVENTPRO_WEB_HOST=0.0.0.0 \
    EVENTPRO_WEB_PORT=6066 \
    EVENTPRO_DATA_DIR=/data
RUN groupadd --system --gid 10001 eventpro \
    && useradd --system --uid 10001 --gid eventpro --home-dir /data --no-create-home eventpro \
    && mkdir /data && chown eventpro:eventpro /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6066
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EVENTPRO_WEB_PORT', '6066') + '/health', timeout=2)"]
ENTRYPOINT ["eventpro"]
CMD ["worker"]
