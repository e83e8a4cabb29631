# syntax=docker/dockerfile:1
# pgbk image: the pgbk CLI and scheduler, with the PostgreSQL client and server binaries it runs
# (pg_basebackup, pg_dump, pg_restore for backups; initdb/pg_ctl/postgres for restore drills).
#
#   docker build -t pgbk .
#   docker run --rm -v "$PWD/policies:/etc/pgbk/policies:ro" pgbk list --policy orders
#
# PG_MAJOR must match the servers being backed up: pg_dump and pg_basebackup refuse newer servers, and a
# drill replays WAL with this version's postgres. Debian bookworm only ships 15, so the binaries come from
# the PostgreSQL project's apt repository (apt.postgresql.org), which has every supported major.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG PG_MAJOR=16

# --- build: npm ci installs and compiles (the prepare script runs tsc), then drop the dev dependencies ---
FROM ${NODE_IMAGE} AS build
WORKDIR /opt/pgbk
COPY . .
RUN --mount=type=cache,target=/root/.npm \
    npm ci && npm prune --omit=dev

# --- runtime ---
FROM ${NODE_IMAGE}
ARG PG_MAJOR
ENV PG_MAJOR=${PG_MAJOR}

# The postgres user first, with the uid/gid of the official postgres image (999), so files in a shared
# volume (a file:// repository, a restored data directory) have the same owner in both containers.
RUN set -eux; \
    groupadd --system --gid 999 postgres; \
    useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres; \
    install -d -o postgres -g postgres -m 0755 /var/lib/postgresql

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    # no "main" cluster: pgbk creates its own scratch clusters for drills and demo
    apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf; \
    apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/pgbk/package.json /opt/pgbk/package.json
COPY --from=build /opt/pgbk/bin /opt/pgbk/bin
COPY --from=build /opt/pgbk/dist /opt/pgbk/dist
COPY --from=build /opt/pgbk/node_modules /opt/pgbk/node_modules
COPY --from=build /opt/pgbk/policies /opt/pgbk/policies
RUN set -eux; \
    ln -s /opt/pgbk/bin/pgbk /usr/local/bin/pgbk; \
    install -d -m 0755 /etc/pgbk/policies; \
    install -d -o postgres -g postgres -m 0700 /var/backups/pgbk

# Policies are read from /etc/pgbk/policies (mount yours there); the examples in /opt/pgbk/policies are not used.
# C.UTF-8 so that clusters pgbk initializes (drills, demo) are UTF8.
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH} \
    PGBK_POLICIES=/etc/pgbk/policies \
    LANG=C.UTF-8

# initdb and postgres refuse to run as root
USER postgres
WORKDIR /var/lib/postgresql
EXPOSE 10987
ENTRYPOINT ["/opt/pgbk/bin/pgbk"]
CMD ["schedule", "--listen", "0.0.0.0:10987"]
