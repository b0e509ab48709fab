# syntax=docker/dockerfile:1
# One static drover image: every stage is a subcommand (drover bridge,
# drover process, drover sink, ...). Build from the repository root:
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t drover:dev .
#
# The build command below is the Makefile's build target; compose/compose_test.go
# checks that the two stay identical and runs this command.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party/ third_party/
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/drover ./cmd/drover
# /state is where stages keep local state (process --state-dir, schedule
# --state-dir). A named volume mounted there starts with this directory's
# owner, so the nonroot user can write to it (distroless has no mkdir).
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="drover" \
      org.opencontainers.image.description="Kafka-centric IoT telemetry pipeline: MQTT -> Kafka -> TimescaleDB, one binary" \
      org.opencontainers.image.source="https://github.com/drover-iot/drover" \
      org.opencontainers.image.url="https://github.com/drover-iot/drover" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/drover /drover
COPY --from=build --chown=65532:65532 /out/state /state
# nonroot (65532): no shell, no package manager. Probes use the admin port's
# /healthz and /readyz (compose/README.md, deploy/).
USER 65532:65532
WORKDIR /home/nonroot
# --dev-env is meant for a laptop next to 'drover dev'; containers configure
# everything through DROVER_* variables.
ENV DROVER_DEV_ENV=""
ENTRYPOINT ["/drover"]
