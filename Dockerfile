# syntax=docker/dockerfile:1
# Images of hft (trading nodes, the venue, the CLI) and hft-operator, from one build:
#   docker build --target hft -t ghcr.io/hft-rs/hft:0.1.0 .
#   docker build --target operator -t ghcr.io/hft-rs/hft-operator:0.1.0 .
# Both run as a non-root user on a distroless base (no shell, no package manager).

FROM rust:1.95-bookworm AS build
# protoc and its well-known types for the etcd client's generated code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      protobuf-compiler=3.21.12-3+deb12u1 libprotobuf-dev=3.21.12-3+deb12u1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hft --bin hft-operator \
 && cp target/release/hft target/release/hft-operator /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot AS hft
COPY --from=build /usr/local/bin/hft /usr/local/bin/hft
USER 65532:65532
# Ledger peers, control channel, admin API, metrics.
EXPOSE 7100 7200 7300 9100
# Metrics on 9100: `run` below, and nodes with HFT_TELEMETRY__METRICS_ADDR (as the
# operator starts them); the healthcheck asks there.
ENV HFT_TELEMETRY__METRICS_ADDR=0.0.0.0:9100
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["/usr/local/bin/hft", "health"]
ENTRYPOINT ["/usr/local/bin/hft"]
CMD ["run"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /usr/local/bin/hft-operator /usr/local/bin/hft-operator
USER 65532:65532
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["/usr/local/bin/hft-operator", "health"]
ENTRYPOINT ["/usr/local/bin/hft-operator"]
CMD ["run"]
