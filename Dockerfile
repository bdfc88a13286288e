# syntax=docker/dockerfile:1
# The one attackmesh image: every service (`attackmesh serve <service>`) and tool from one binary.
#   docker build -t attackmesh:0.1.0 .
# Runs as the distroless `nonroot` user (uid/gid 65532) and needs no writable root filesystem:
# state lives in the directories the configuration names (volumes in Kubernetes).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The knowledge base and rule packs are embedded at build time; protobuf is compiled by protox
# (pure Rust), so no protoc or other system packages are needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p attackmesh-cli \
 && install -D -m 0755 target/release/attackmesh /out/attackmesh

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="attackmesh" \
      org.opencontainers.image.description="Attribute security detections to MITRE ATT&CK and deliver them to SIEMs and TAXII partners" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/attackmesh /usr/local/bin/attackmesh
USER 65532:65532
# gRPC: attribution 50051, enrichment 50052, siem-export 50053, intel 50054; TAXII HTTP 50055.
EXPOSE 50051 50052 50053 50054 50055
ENTRYPOINT ["/usr/local/bin/attackmesh"]
CMD ["--help"]
