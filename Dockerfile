# One image for every crmsync service and the CLI:
#   python -m services.ingest | services.processor | services.outbound | services.admin
#   crmsync migrate, crmsync topics ensure, ...
# docker-compose.yml picks the command per container.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The checkout layout is kept under /app: repo_root() is the parent of the crmsync package
# (an editable install leaves it at /app/crmsync), and infra/migrations is read from there.
WORKDIR /app

# Runtime user; the code stays root-owned and read-only to it.
RUN groupadd --system --gid 10001 crmsync \
 && useradd --system --uid 10001 --gid crmsync --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin crmsync

COPY pyproject.toml constraints.txt README.md ./

# Dependencies first, in their own layer, so editing code does not reinstall them.
# constraints.txt is the lock (exact versions); it also pins pip and the build backend.
RUN PIP_CONSTRAINT=/app/constraints.txt pip install --no-cache-dir pip \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && PIP_CONSTRAINT=/app/constraints.txt pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY crmsync/ crmsync/
COPY services/ services/
COPY connectors/ connectors/
COPY schemas/ schemas/
COPY infra/migrations/ infra/migrations/

# Editable, so repo-root-relative paths (infra/migrations) resolve to /app.
# /app/.crmsync/processor (CRMSYNC_PROCESSOR_DATA_DIR) is where faust writes its data
# directory even with the in-memory store; it is the only path the services write to.
RUN PIP_CONSTRAINT=/app/constraints.txt pip install --no-cache-dir -e . \
 && mkdir -p /app/.crmsync/processor \
 && chown -R crmsync:crmsync /app/.crmsync

USER crmsync

# ingest, admin, processor, outbound (each service's default port).
EXPOSE 8080 8081 9102 9101

CMD ["crmsync", "--help"]
