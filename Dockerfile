# syntax=docker/dockerfile:1
# One image for every role: the chart (helm/smsc) runs it as `smsc edge`, `smsc router`
# and `smsc worker` with --config /etc/smsc/config.yaml. Built with the cluster backends
# (bus.kind: kafka, store.kind: scylla) and the Kubernetes integration (feature k8s:
# accounts from SmppAccount resources, `accounts_crd`, and ready edges from EndpointSlices,
# `edge.peers.service`; kube-rs on rustls/ring, so no OpenSSL).
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t smsc:0.1.0 .

FROM rust:1.95-bookworm AS build
# The bundled librdkafka build (rdkafka features cmake-build, curl, libz, ssl).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ pkg-config zlib1g-dev libcurl4-openssl-dev \
      libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# rust-toolchain.toml pins the toolchain: rustup fetches it if the image's patch release
# differs. protoc comes vendored (protoc-bin-vendored), no package needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p smsc --features kafka,scylla,k8s \
 && install -D -m 0755 target/release/smsc /out/smsc

FROM debian:bookworm-slim
# The release version (Cargo.toml's workspace version) and the commit built.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="smsc" \
      org.opencontainers.image.description="A Kubernetes-native SMSC: SMPP edge, router and delivery workers on Kafka and ScyllaDB" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/example/smsc" \
      org.opencontainers.image.licenses="Apache-2.0"
# libcurl4 (and with it libssl3): librdkafka links the system libcurl and OpenSSL, so the image is
# Debian rather than distroless. ca-certificates: TLS to brokers and ScyllaDB (the
# Kubernetes API is trusted through the service account's own ca.crt).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 smsc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin smsc \
 && mkdir -p /etc/smsc
COPY --from=build /out/smsc /usr/local/bin/smsc
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
# SMPP, SMPP over TLS, gRPC (Edge.Deliver, SessionDirectory), admin (/metrics /live /ready).
EXPOSE 2775 2776 50051 9090
ENTRYPOINT ["/usr/local/bin/smsc"]
CMD ["--help"]
