# The PHT protocol container, trainyard edition: same contract as the PHT
# library's protocol image, no Docker engine or socket needed.
#
#   docker build -f docker/protocol.Dockerfile -t trainyard-protocol .
#   docker run --rm \
#     -e STATION_ID=s1 -e PRIVATE_KEY_PATH=/keys/station.pem [-e PRIVATE_KEY_PASSWORD=...] \
#     -v "$PWD/keys:/keys:ro" \
#     -v "$HOME/.docker/config.json:/home/nonroot/.docker/config.json:ro" \
#     -v /var/lib/station:/work \
#     trainyard-protocol pre-run harbor.example.org/station1/train-id:latest --out oci:/work/train-id
#   ... run ..., then the same with:
#     trainyard-protocol post-run oci:/work/train-id --out harbor.example.org/station1/train-id:latest
#
# Images are registry refs, oci:DIR or docker tarballs; pre-run output is
# decrypted, so it must be sent to a local --out. Give the container a
# writable TMPDIR with room for the results (a volume on /tmp for big trains).

FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/trainyard ./cmd/trainyard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trainyard /usr/local/bin/trainyard
ENV TRAINYARD_TMPDIR=/tmp \
    DOCKER_CONFIG=/home/nonroot/.docker
ENTRYPOINT ["/usr/local/bin/trainyard", "protocol"]
CMD ["--help"]
