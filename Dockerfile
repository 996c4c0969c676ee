# census-exporter container image.
#   docker build -t census-exporter .
#   docker run -p 10049:10049 -e CENSUS_API_TOKEN=secret-token:... census-exporter
# For reproducible builds pin the base by digest, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim@sha256:<digest> .
# (docs/deployment.md shows how to look the digest up).
ARG PYTHON_IMAGE=python:3.12-slim

# ---- builder: every package from the hashed lock files (make lock; pip refuses anything unpinned, any other
#      file and any source build), then the project's wheel, built with the locked setuptools and wheel
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary :all: -r requirements-build.lock \
 && python -m venv /opt/census-exporter \
 && /opt/census-exporter/bin/pip install --no-cache-dir --require-hashes --only-binary :all: -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
COPY scripts/write-build-info ./scripts/
# census_exporter_build_info's revision and branch (the release workflow passes the tag's; else "unknown").
ARG REVISION=unknown
ARG BRANCH=unknown
RUN python scripts/write-build-info --revision "$REVISION" --branch "$BRANCH"
# The wheel alone (--no-deps, --no-index): its dependencies are the locked ones above, and pip check says so.
# pip (and the setuptools Python 3.11's venv seeds) leave: the virtualenv then holds only what the lock pins.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/census-exporter/bin/pip install --no-cache-dir --no-deps --no-index /wheels/census_exporter-*.whl \
 && /opt/census-exporter/bin/pip check \
 && /opt/census-exporter/bin/pip uninstall --yes pip setuptools

# ---- runtime: the virtualenv only; no compilers, no wheels, no pip caches
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="census-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Census (Fivetran Activations) reverse-ETL sync runs" \
      org.opencontainers.image.source="https://github.com/census-exporter/census-exporter" \
      org.opencontainers.image.documentation="https://github.com/census-exporter/census-exporter/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN useradd --system --no-log-init --uid 10049 --user-group --no-create-home --shell /usr/sbin/nologin census
COPY --from=builder /opt/census-exporter /opt/census-exporter
ENV PATH="/opt/census-exporter/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10049:10049
EXPOSE 10049
# Liveness without curl: the image's own Python asks /healthz where the running exporter listens, over
# the scheme its --web.config.file sets (it reads the flags from /proc/1; docs/security.md says what counts).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-m", "census_exporter.healthcheck"]
ENTRYPOINT ["census-exporter"]
