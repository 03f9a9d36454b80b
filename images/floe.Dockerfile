# The `floe` agent image: one static binary and the CA bundle, nothing else (no shell, no libc, no
# package manager). The build context is the staging folder e2e/scripts/images.sh fills
# (`make images`): `floe` (static-pie, glibc) and `ca-certificates.crt` from the build host.
FROM scratch

# org.opencontainers.image.source is added by the build (--label) once the repository has a
# canonical URL: images.sh passes FLOE_IMAGE_SOURCE when it is set.
ARG VERSION
ARG REVISION

LABEL org.opencontainers.image.title="floe" \
      org.opencontainers.image.description="Floe agent: a stateless Kafka-protocol server on object storage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# S3 over HTTPS verifies the endpoint against this bundle (rustls-native-certs reads SSL_CERT_FILE).
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Owned by root and not writable by the user below.
COPY floe /floe

# Numeric, so the kubelet can check runAsNonRoot without an /etc/passwd in the image.
USER 65532:65532
# Kafka, then HTTP (/healthz, /readyz, /metrics). The defaults bind 127.0.0.1; in a pod pass
# FLOE_KAFKA_LISTEN=0.0.0.0:9092 and FLOE_HTTP_LISTEN=0.0.0.0:8080.
EXPOSE 9092 8080
ENTRYPOINT ["/floe"]
