# sqlmux container image: built with cargo on Debian bookworm, run on
# distroless (glibc and libgcc only: no shell, no package manager), as a
# non-root user.
#
#   docker build -t sqlmux:0.1.0 .
#   docker run --rm -p 6432:6432 -p 6434:6434 \
#     -v "$PWD/sqlmux.toml:/etc/sqlmux/sqlmux.toml:ro" sqlmux:0.1.0
#
# The configuration is read from /etc/sqlmux/sqlmux.toml (the Helm chart
# mounts it from a ConfigMap, passwords and TLS files from a Secret).
# SIGTERM drains: listeners stop, open transactions may finish within
# general.shutdown_timeout. scripts/deploy-test.sh lints this file and
# checks that the binary links only libraries the runtime image has.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sqlmux \
    && install -D -m 0755 target/release/sqlmux /out/sqlmux

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="sqlmux" \
      org.opencontainers.image.description="Connection-pooling proxy for PostgreSQL and MySQL with per-statement insight" \
      org.opencontainers.image.source="https://github.com/sqlmux/sqlmux" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/sqlmux /usr/local/bin/sqlmux
COPY --chown=65532:65532 config.example.toml /etc/sqlmux/sqlmux.toml
# 65532 is distroless's "nonroot"; numeric so Kubernetes can check runAsNonRoot.
USER 65532:65532
# postgres, mysql, admin (psql console + HTTP /metrics, /healthz, /readyz)
EXPOSE 6432 6033 6434
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sqlmux", "--config", "/etc/sqlmux/sqlmux.toml"]
