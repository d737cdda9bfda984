# syntax=docker/dockerfile:1
# The InvokeAI gateway: a slim, non-root image. Build: docker build -t invokeai-gateway .
# Run next to InvokeAI with docker-compose.yml (the gateway waits for InvokeAI to be healthy).

ARG PYTHON_VERSION=3.11

# -- build: a virtualenv with the gateway and its dependencies ---------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/gateway
COPY pyproject.toml README.md ./
COPY invokeai_py_client ./invokeai_py_client
COPY app ./app
# The migrations ship inside the app package (app/db/migrations), so a plain install will do.
RUN pip install .

# -- runtime ----------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INVOKEAI_URL=http://invokeai:9090 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_MIGRATE_ON_START=false
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent gateway \
    && mkdir /data \
    && chown gateway:gateway /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /data
USER gateway
VOLUME ["/data"]
EXPOSE 8080
# Ready means InvokeAI reachable, its events connected and the database writable (GET /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/readyz', timeout=4)"]
# Migrate the database first (a failure stops the container before it serves), then serve;
# arguments to `docker run` become flags of `serve`.
ENTRYPOINT ["/bin/sh", "-c", "invokeai-gateway migrate && exec invokeai-gateway serve \"$@\"", "invokeai-gateway"]
CMD []
