# syntax=docker/dockerfile:1
#
# ringroute container image: a static binary on distroless, as a non-root
# user. deploy/README.md has the run commands.
#
#   docker build -t ringroute --build-arg VERSION=$(git describe --tags --always) .
#   docker run -d --name ringroute --network host --stop-timeout 45 \
#     -v /etc/ringroute:/etc/ringroute:ro ringroute

ARG GO_VERSION=1.26

# --- build: a static binary (no cgo), with the time zone database built in
# for group schedules.
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags timetzdata \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ringroute ./cmd/ringroute \
 && /out/ringroute version \
 && /out/ringroute check -c deploy/ringroute.yaml \
 && mkdir -p /out/state /out/logs

# --- busybox, only for HEALTHCHECK: distroless has no shell and no HTTP
# client. The musl image's busybox is static.
FROM busybox:1.37.0-musl AS busybox

# --- runtime: distroless static (CA certificates, tzdata, /etc/passwd with
# nonroot = 65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ringroute /usr/local/bin/ringroute
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
# The default config; mount your own over /etc/ringroute (it holds
# passwords and the admin token: keep it out of the image).
COPY deploy/ringroute.yaml /etc/ringroute/ringroute.yaml
# State (registrations.json, recordings) and the CDR, owned by nonroot.
COPY --from=build --chown=65532:65532 /out/state/ /var/lib/ringroute/
COPY --from=build --chown=65532:65532 /out/logs/ /var/log/ringroute/
VOLUME ["/var/lib/ringroute", "/var/log/ringroute"]
WORKDIR /var/lib/ringroute
USER 65532:65532

# SIP, and the admin HTTP port (/healthz, /metrics, /api/v1/...). The
# shipped config keeps admin on the container's loopback, where only the
# HEALTHCHECK reaches it; to scrape /metrics from outside, listen on
# 0.0.0.0:8080 with an admin.token and set RINGROUTE_HEALTH_TOKEN to it.
#
# RTP: relay mode takes an even port and the next one per stream from
# media.ports (default 10000-20000/udp), and puts advertise (or the
# container's own address) in SDP. Publishing 10000 UDP ports with -p is
# slow and the container address is wrong for peers outside, so run with
# --network host, or narrow media.ports, publish that range 1:1
# (-p 10000-10999:10000-10999/udp) and set advertise to the host's address.
EXPOSE 5060/udp 5060/tcp 8080/tcp

# SIGTERM drains: new calls get 503, calls in progress go on for up to
# drain_timeout (30s). Docker's default stop timeout is 10s: give
# `docker run --stop-timeout 45` (compose: stop_grace_period: 45s).
STOPSIGNAL SIGTERM

# 200 from /healthz, 503 (unhealthy) while draining. HEALTHCHECK --timeout
# bounds the request (no wget -T: it crashed the static busybox tried here).
ENV RINGROUTE_HEALTH_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/busybox", "sh", "-c", "exec /usr/local/bin/busybox wget -q -O /dev/null ${RINGROUTE_HEALTH_TOKEN:+--header \"Authorization: Bearer $RINGROUTE_HEALTH_TOKEN\"} \"$RINGROUTE_HEALTH_URL\""]

ENTRYPOINT ["/usr/local/bin/ringroute"]
CMD ["run", "-c", "/etc/ringroute/ringroute.yaml"]
