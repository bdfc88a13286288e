# The one attackmesh image: every service (`attackmesh serve <service>`) and tool from one binary,
# on an empty base. scripts/build-image compiles the binary and stages the build context (the
# binary, the few C libraries it links, CA roots, and a passwd naming uid/gid 65532), then builds
# this file with buildah — no daemon, no registry, reproducible timestamps:
#   scripts/build-image                    # ghcr.io/attackmesh/attackmesh:<version>
#   scripts/build-image --archive img.tar  # and an OCI archive to load or push
# Runs as uid/gid 65532 and needs no writable root filesystem: state lives in the directories the
# configuration names (volumes in Kubernetes), temporary files in a /tmp volume.
FROM scratch
COPY . /
USER 65532:65532
# gRPC: attribution 50051, enrichment 50052, siem-export 50053, intel 50054; TAXII HTTP 50055.
EXPOSE 50051 50052 50053 50054 50055
ENTRYPOINT ["/usr/local/bin/attackmesh"]
CMD ["--help"]
