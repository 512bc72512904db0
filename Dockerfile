# Multi-stage build: compile in the Rust image, run in a slim Debian with a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Embedded at compile time (include_str!): the price table and the emulator defaults.
COPY config ./config
RUN cargo build --release --locked --bin gemgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/gemgate --create-home gemgate
COPY --from=build /src/target/release/gemgate /usr/local/bin/gemgate
COPY config/gemgate.toml /etc/gemgate/gemgate.toml
USER gemgate
WORKDIR /var/lib/gemgate
ENV GEMGATE_SERVER__LISTEN=0.0.0.0:8080 \
    GEMGATE_STORE__SQLITE_PATH=/var/lib/gemgate/gemgate.sqlite
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["gemgate"]
CMD ["serve", "--config", "/etc/gemgate/gemgate.toml"]
