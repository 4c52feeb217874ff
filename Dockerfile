# syntax=docker/dockerfile:1
#
# The ocync image: the `ocync` binary alone on distroless (CA certificates, no shell), running as
# the nonroot user 65532. The Helm chart in charts/ocync runs it with `args` only.
#
#   docker build -t ocync .                    fully static musl build on distroless/static
#   docker build --target glibc -t ocync .     glibc build on distroless/cc
#   docker run --rm ocync --version
#
# What was verified, and what was not: this file has NOT been built. It was written on a machine
# without a Docker engine and without network access to the Docker Hub, gcr.io or the Rust
# toolchain mirrors, and no cargo build was run for it. Checked by reading the workspace and
# `cargo tree -p ocync-cli`: the `ocync` binary is package ocync-cli (rust-version 1.94.1;
# toolchain 1.95 in development); the only C code in its build is aws-lc-sys 0.47 (through rustls and the AWS SDK), which ships pre-generated bindings for
# x86_64/aarch64 linux-gnu and linux-musl and compiles with the `cc` crate, so a C compiler
# is enough (no cmake, clang or Go), gcc in the rust image for glibc and musl-gcc (musl-tools)
# for the static target; no OpenSSL is linked (rustls only), and the system trust store that
# rustls-native-certs finds through openssl-probe is /etc/ssl/certs/ca-certificates.crt, which
# both distroless images have. .dockerignore keeps target/ and .git out of the context.
# Why static is the default: the image then holds one file that needs nothing from its base
# (the smallest distroless, no libc). musl's allocator is slower than glibc's under many threads;
# if a profile ever shows it, `--target glibc` is the same binary built against glibc.
#
# BuildKit (the default builder since Docker 23) is needed for the cache mounts below.

ARG RUST_VERSION=1.95

# ---- glibc build -------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Registry and target directories are cache mounts, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ocync-cli --bin ocync \
 && install -D -m 0755 target/release/ocync /out/ocync \
 && /out/ocync --version

# ---- glibc image (opt-in: --target glibc) -------------------------------------------------
# bookworm's glibc (2.36) matches the builder's, so the binary's glibc symbol versions are all
# present.
FROM gcr.io/distroless/cc-debian12:nonroot AS glibc
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ocync" \
      org.opencontainers.image.description="Copy and keep in sync OCI images and artifacts between registries" \
      org.opencontainers.image.source="https://github.com/ocync/ocync" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/ocync /usr/local/bin/ocync
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ocync"]

# ---- default image: a static musl binary on distroless/static ----------------------------
# The last stage is what a plain `docker build` produces.
FROM rust:${RUST_VERSION}-bookworm AS builder-musl
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# C code for the musl targets goes through musl-gcc (the cc crate would look for
# aarch64-linux-musl-gcc on arm64, which Debian does not have).
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
# TARGETARCH is set by BuildKit: amd64 or arm64 (native builds; no cross-compilation).
ARG TARGETARCH
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    target="$(cat /rust-target)" \
 && cargo build --release --locked -p ocync-cli --bin ocync --target "$target" \
 && install -D -m 0755 "target/$target/release/ocync" /out/ocync \
 && /out/ocync --version

FROM gcr.io/distroless/static-debian12:nonroot AS static
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ocync" \
      org.opencontainers.image.description="Copy and keep in sync OCI images and artifacts between registries (statically linked)" \
      org.opencontainers.image.source="https://github.com/ocync/ocync" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder-musl /out/ocync /usr/local/bin/ocync
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ocync"]
