# syntax=docker/dockerfile:1
#
# modelarts-monitor: the daemon in a small image.
#
#   docker build -t modelarts-monitor .
#   docker run --rm -p 9888:9888 modelarts-monitor demo --listen 0.0.0.0:9888
#   docker run -d -p 9888:9888 --env-file modelarts.env \
#     -v "$PWD/config.yaml:/etc/modelarts-monitor/config.yaml:ro" \
#     -v modelarts-monitor-state:/var/lib/modelarts-monitor modelarts-monitor
#
# Two stages: the builder turns the project into wheels and installs them into a virtualenv;
# the final stage copies only that virtualenv, so no compiler, pip cache or source tree ships.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the build needs (.dockerignore allows nothing else into the context).
COPY pyproject.toml README.md ./
COPY monitor ./monitor
# Every dependency ships binary wheels for CPython 3.11 (amd64 and arm64): nothing compiles.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels modelarts-monitor \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/modelarts-monitor --version

FROM python:3.11-slim
LABEL org.opencontainers.image.title="modelarts-monitor" \
      org.opencontainers.image.description="Watches Huawei Cloud ModelArts training jobs; Prometheus metrics and CloudEvents" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed uid/gid so volume permissions and Kubernetes' runAsUser can name it.
RUN groupadd --system --gid 10001 modelarts-monitor \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/modelarts-monitor \
      --no-create-home --shell /usr/sbin/nologin modelarts-monitor \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/modelarts-monitor \
 && install -d -o 10001 -g 10001 -m 0750 /var/log/modelarts-monitor \
 && install -d -m 0755 /etc/modelarts-monitor
COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/modelarts-monitor
# state.path defaults to /var/lib/modelarts-monitor/state.db (SQLite, WAL: needs the directory).
VOLUME ["/var/lib/modelarts-monitor"]
EXPOSE 9888

# /healthz answers while the process serves; slim has no curl, so use the stdlib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9888/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM drains: in-flight polls finish, sinks get up to 10 s; give `docker stop -t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["modelarts-monitor"]
# Mount the config here (credentials come from HUAWEICLOUD_SDK_AK/SK/PROJECT_ID in the env).
CMD ["run", "--config", "/etc/modelarts-monitor/config.yaml"]
