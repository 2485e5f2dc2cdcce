# syntax=docker/dockerfile:1
# The kone-dispatch images:
#
#   docker build --target runtime -t kone-dispatch .       kone-worker, kone-producer, kone-events
#   docker build --target sim -t kone-dispatch-sim .       kone-sim and its test data
#
# (.github/workflows/pipeline.yml builds and pushes both.) The production image carries no
# test material: kone-sim and sim/*.json (buildings, and clients whose secrets are public
# dev values) are only in the `sim` image, which the chart runs when sim.enabled. A plain
# `docker build .` builds the last stage, the production one.
#
# Stages: Debian 12 with the -dev packages, cmake and ninja builds the programs; `base`
# (bookworm-slim) gets only the shared libraries they link (their runtime packages), CA
# certificates and an unprivileged user; `sim` and `runtime` each add their programs to it.
# The Helm chart (charts/kone-dispatch) runs each program by its path in /usr/local/bin.
#
# tests/ops/dockerfile_image.sh keeps this file honest without a Docker engine: the
# programs built are exactly the build's install set (cmake --install), each copied into one
# image (kone-sim into `sim`, the others into `runtime`), the runtime image has no kone-sim,
# nothing from sim/ and no dev credential, and the packages are exactly those owning the
# libraries the programs link.

ARG DEBIAN_RELEASE=bookworm

# ---- build -----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake ninja-build pkg-config \
        librabbitmq-dev librdkafka-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev libgnutls28-dev \
        libwebsockets-dev libwslay-dev libjansson-dev libmicrohttpd-dev libcmocka-dev libpq-dev \
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

# ---- base: the runtime libraries and the user, shared by both images ------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS base
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        libcurl4 \
        libgnutls30 \
        libjansson4 \
        libmicrohttpd12 \
        libmsgpackc2 \
        libpq5 \
        librabbitmq4 \
        librdkafka1 \
        libssl3 \
        libwebsockets17 \
        libwslay1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kd \
    && useradd --system --uid 10001 --gid kd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kd

# Numeric, so Kubernetes can verify runAsNonRoot; the chart runs as the same uid/gid.
USER 10001:10001

# ---- sim: kone-sim, for tests, demos and environments without KONE access -------------------
FROM base AS sim
COPY --from=build /out/bin/kone-sim /usr/local/bin/
# kone-sim's default buildings and clients (its defaults sim/buildings.json and
# sim/clients.json resolve from the working directory).
COPY sim/buildings.json sim/clients.json /usr/share/kone-dispatch/sim/
WORKDIR /usr/share/kone-dispatch
EXPOSE 8443
CMD ["/usr/local/bin/kone-sim"]

# ---- runtime: the production image (last, so that a plain `docker build .` makes it) -------
FROM base AS runtime
COPY --from=build /out/bin/kone-worker /out/bin/kone-producer /out/bin/kone-events /usr/local/bin/
EXPOSE 9464
CMD ["/usr/local/bin/kone-worker"]
