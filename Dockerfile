# syntax=docker/dockerfile:1
# callgate in a container: a multi-stage build, a small Debian runtime, a non-root user,
# the journal on a volume. See README.md, "Packaging".
#
#   docker build -t callgate .
#   docker run -d -p 7700:7700 -v callgate-data:/var/lib/callgate \
#     -e CALLGATE_ADMIN_TOKEN=… -e CALLGATE_CLIENT_TOKEN=… callgate

# The builder: the workspace's toolchain floor is newer than rust-version says (clap 4.6
# needs 1.85), so take the current stable 1.x on the same Debian as the runtime.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches stay between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p callgate \
    && install -D -m 0755 target/release/callgate /out/callgate

# The runtime: glibc and nothing else callgate needs (TLS roots are compiled in).
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 callgate \
    && useradd --system --uid 10001 --gid callgate --home-dir /var/lib/callgate --shell /usr/sbin/nologin callgate \
    && install -d -o callgate -g callgate -m 0700 /var/lib/callgate
COPY --from=build /out/callgate /usr/local/bin/callgate
COPY deploy/docker/callgate.toml /etc/callgate/callgate.toml
USER 10001:10001
WORKDIR /var/lib/callgate
VOLUME ["/var/lib/callgate"]
EXPOSE 7700
# /healthz: 503 when the journal cannot commit (admission stopped), so the orchestrator
# sees it; `callgate health` needs no key and no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/callgate", "health", "--server", "http://127.0.0.1:7700"]
# SIGTERM finishes the requests in flight and flushes the journal.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/callgate"]
CMD ["serve", "--config", "/etc/callgate/callgate.toml"]
