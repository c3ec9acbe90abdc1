# syntax=docker/dockerfile:1
# moa-router: a slim, non-root image; every Python package is pinned and hash-checked (requirements.lock,
# runtime part only). Pin the base image by digest too when you build for production:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> -t moa-router .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# A C compiler for the classifier's optional extensions (setup.py), in this stage only: the runtime
# stage copies the built venv and has no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock pyproject.toml deploy/runtime_lock.py ./
RUN python runtime_lock.py requirements.lock pyproject.toml > runtime.lock \
 && python -m venv /opt/moa-router \
 && /opt/moa-router/bin/pip install --require-hashes --no-deps -r runtime.lock
COPY README.md setup.py ./
COPY router ./router
COPY classifier ./classifier
RUN /opt/moa-router/bin/pip install --no-deps --no-build-isolation . \
 && /opt/moa-router/bin/pip check \
 && /opt/moa-router/bin/python -c "import classifier._native_features, classifier._native_focus"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 moa \
 && useradd --system --uid 10001 --gid moa --home-dir /var/lib/moa-router --create-home --shell /usr/sbin/nologin moa
COPY --from=build /opt/moa-router /opt/moa-router
COPY training_data /opt/moa-router/training_data
COPY deploy/config.yaml /etc/moa-router/config.yaml
ENV PATH=/opt/moa-router/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    MOA_ROUTER_CONFIG=/etc/moa-router/config.yaml \
    MOA_ROUTER_DATA_DIR=/var/lib/moa-router
USER 10001:10001
WORKDIR /var/lib/moa-router
EXPOSE 8080
# No curl in a slim image: the check is one stdlib HTTP GET of /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
# SIGTERM: uvicorn stops accepting, drains in-flight requests (resilience.shutdown_grace_s), then the
# app's shutdown flushes the outcome log before the Redis client closes.
STOPSIGNAL SIGTERM
ENTRYPOINT ["moa-router"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
