# syntax=docker/dockerfile:1
# The kone-dispatch image: kone-worker, kone-producer, kone-events and kone-sim.
#
#   docker build -t kone-dispatch .        (.github/workflows/pipeline.yml builds and pushes it)
#
# Two stages: Debian 12 with the -dev packages, cmake and ninja builds the programs; a
# bookworm-slim runtime gets only the shared libraries they link (their runtime packages)
# and CA certificates, and runs as an unprivileged user. The Helm chart
# (charts/kone-dispatch) runs each program by its path in /usr/local/bin.
#
# tests/ops/dockerfile_image.sh keeps this file honest without a Docker engine: the
# programs built and copied are exactly the build's install set (cmake --install), and the
# runtime packages are exactly those owning the libraries the programs link.

ARG DEBIAN_RELEASE=bookworm

# ---- build -----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake ninja-build pkg-config \
        librabbitmq-dev librdkafka-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev \
        libwebsockets-dev libjansson-dev libmicrohttpd-dev libcmocka-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY shared/ shared/
COPY worker/ worker/
COPY producer/ producer/
COPY events/ events/
COPY sim/ sim/
# CMakeLists.txt globs tests/unit and tests/ops; the programs need none of them, so only
# the program targets are built. -O2 (RelWithDebInfo; --strip drops the debug info) with the
# project's -Werror: tests/ops/dockerfile_build.sh runs these same commands in scripts/test,
# so an optimized build that warns fails there first, not in CI's image job.
RUN mkdir -p tests/unit tests/integration tests/ops \
    && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKD_SANITIZE=OFF \
    && cmake --build build --target kone-worker kone-producer kone-events kone-sim \
    && cmake --install build --prefix /out --strip

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        libcurl4 \
        libjansson4 \
        libmicrohttpd12 \
        libmsgpackc2 \
        libpq5 \
        librabbitmq4 \
        librdkafka1 \
        libssl3 \
        libwebsockets17 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kd \
    && useradd --system --uid 10001 --gid kd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kd

COPY --from=build /out/bin/kone-worker /out/bin/kone-producer /out/bin/kone-events /out/bin/kone-sim /usr/local/bin/
# kone-sim's default buildings and clients (its defaults sim/buildings.json and
# sim/clients.json resolve from the working directory).
COPY sim/buildings.json sim/clients.json /usr/share/kone-dispatch/sim/
WORKDIR /usr/share/kone-dispatch

# Numeric, so Kubernetes can verify runAsNonRoot; the chart runs as the same uid/gid.
USER 10001:10001
EXPOSE 9464 8443
CMD ["/usr/local/bin/kone-worker"]
