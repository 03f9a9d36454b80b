# The `floe-operator` image: one static binary and the CA bundle, nothing else (no shell, no libc,
# no package manager). The build context is the staging folder e2e/scripts/images.sh fills
# (`make images`): `floe-operator` (static-pie, glibc) and `ca-certificates.crt` from the build host.
FROM scratch

# org.opencontainers.image.source is added by the build (--label) once the repository has a
# canonical URL: images.sh passes FLOE_IMAGE_SOURCE when it is set.
ARG VERSION
ARG REVISION

LABEL org.opencontainers.image.title="floe-operator" \
      org.opencontainers.image.description="Floe operator: reconciles VirtualCluster and AgentPool resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# For HTTPS endpoints outside the cluster; the in-cluster API server's CA comes from the service
# account mount.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Owned by root and not writable by the user below.
COPY floe-operator /floe-operator

# Numeric, so the kubelet can check runAsNonRoot without an /etc/passwd in the image.
USER 65532:65532
# HTTP: /metrics, /healthz, /readyz (`floe-operator run --http-listen`, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/floe-operator"]
