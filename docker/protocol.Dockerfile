# The PHT protocol container, trainyard edition: same contract as the PHT
# library's protocol image, no Docker engine or socket needed.
#
#   docker build -f docker/protocol.Dockerfile -t trainyard-protocol .
#   docker run --rm \
#     -e STATION_ID=s1 -e PRIVATE_KEY_PATH=/keys/station.pem [-e PRIVATE_KEY_PASSWORD=...] \
#     -v "$PWD/keys:/keys:ro" \
#     -v "$HOME/.docker/config.json:/home/nonroot/.docker/config.json:ro" \
#     trainyard-protocol pre-run harbor.example.org/station1/train-id:latest [--out REF]
#
# The image is read from and written back to the registry (or --out); give
# it a writable TMPDIR with room for the results (a volume on /tmp for big
# trains).

FROM golang:1.26 AS build
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
