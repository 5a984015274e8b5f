# syntax=docker/dockerfile:1
# The Imprimatur controller image: `imprimatur serve` runs the kopf operator and its admission webhook
# (8443, TLS from /etc/imprimatur/tls), the liveness endpoint (8080/healthz) and metrics (9090).
#
#   docker build -t imprimatur:dev .
#
# Supply chain: every Python package is pinned and hash-checked (requirements.lock, written by
# hack/lock-requirements.py for CPython 3.11 on linux x86_64). The base image is named by tag because
# its digest cannot be looked up from where this file was written: pin it in CI with
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# and build with --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# --no-deps with --require-hashes: the lock is complete, so nothing unpinned can slip in.
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock \
 && /opt/venv/bin/pip check
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# The build backend (setuptools) comes from the lock too: no build isolation, no unpinned download.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="imprimatur" \
      org.opencontainers.image.description="Admission controller for cosign keyless signatures" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The chart runs this read-only, with /tmp an emptyDir and the TLS Secret at /etc/imprimatur/tls.
USER 65532:65532
EXPOSE 8443 8080 9090
ENTRYPOINT ["imprimatur", "serve"]
