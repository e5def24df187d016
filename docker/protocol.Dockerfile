# The PHT protocol container, trainyard edition: same contract as the PHT
# library's protocol image and as the image `make image` assembles without
# Docker (docker/mkimage): entrypoint `trainyard protocol`, STATION_ID,
# PRIVATE_KEY_PATH, PRIVATE_KEY_PASSWORD, TRAINYARD_TMPDIR=/tmp.
#
#   docker build -f docker/protocol.Dockerfile -t trainyard-protocol .
#
# On the local engine's images, in place, as the PHT station calls it (the
# socket is root:docker 660: the default user is root; the non-root
# variant needs --group-add "$(stat -c %g /var/run/docker.sock)"):
#   docker run --rm \
#     -e STATION_ID=s1 -e PRIVATE_KEY_PATH=/keys/station.pem [-e PRIVATE_KEY_PASSWORD=...] \
#     -v "$PWD/keys:/keys:ro" -v /var/run/docker.sock:/var/run/docker.sock \
#     trainyard-protocol pre-run harbor.example.org/station1/train-id:latest
#   ... run and commit ..., then: trainyard-protocol post-run IMAGE [--rebase]
#
# Or without any socket, on registry refs, oci:DIR or docker tarballs
# (pre-run output is decrypted and never goes to a registry):
#   docker run --rm -e ... -v "$PWD/keys:/keys:ro" \
#     -v "$HOME/.docker/config.json:/root/.docker/config.json:ro" -v /var/lib/station:/work \
#     trainyard-protocol pre-run harbor.example.org/station1/train-id:latest --out oci:/work/train-id
#   ... run ..., then: post-run oci:/work/train-id --out harbor.example.org/station1/train-id:latest
#
# Give the container a writable TMPDIR with room for the results (a volume
# on /tmp for big trains).

FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/trainyard ./cmd/trainyard

# Same user, paths and environment as `make image`: root by default, so
# that a root:docker socket is reachable; --build-arg IMAGE_USER=65532
# IMAGE_HOME=/home/nonroot for the non-root variant (then --group-add).
FROM gcr.io/distroless/static-debian12
ARG IMAGE_USER=0
ARG IMAGE_HOME=/root
COPY --from=build /out/trainyard /usr/local/bin/trainyard
ENV TRAINYARD_TMPDIR=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=${IMAGE_HOME} \
    DOCKER_CONFIG=${IMAGE_HOME}/.docker
USER ${IMAGE_USER}
ENTRYPOINT ["/usr/local/bin/trainyard", "protocol"]
CMD ["--help"]
