# syntax=docker/dockerfile:1
#
# signalpost: build in the Rust image, run in a slim Debian one as a non-root user.
#   docker build -t signalpost .
#   docker run -p 8080:8080 -v signalpost-data:/data signalpost
# docker-compose.yml runs it together with coturn and nginx (docs/deployment.md).

# ---- build ----------------------------------------------------------------------------
# Same Debian release as the runtime stage, so the binary's glibc matches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds; the binary is
# copied out because the target directory is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package signalpost \
    && install -m 0755 target/release/signalpost /usr/local/bin/signalpost

# ---- runtime --------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# A fixed, unprivileged uid so volume ownership is predictable across rebuilds.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin signalpost \
    && mkdir -p /data \
    && chown signalpost:signalpost /data

COPY --from=build /usr/local/bin/signalpost /usr/local/bin/signalpost

# The SQLite database lives on a volume so it survives container replacement. A new named
# volume copies /data's ownership from the image, so the non-root user can write it.
VOLUME /data
ENV SQLITE_DB_PATH=/data/chat.db \
    HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080

USER signalpost

# The slim image has no curl: bash's /dev/tcp sends a plain HTTP/1.0 request and the check
# passes only on a "200" status line. tests/api/compose_file.rs runs this exact command.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q '^HTTP/1\\.[01] 200 '"]

ENTRYPOINT ["/usr/local/bin/signalpost"]
