# syntax=docker/dockerfile:1
# Images of GUSTAV's learning worker, one Dockerfile with two final targets:
#
#   docker build --target runner   -t learning-runner:0.1.0 .
#   docker build --target operator -t learning-operator:0.1.0 .
#   (or: make images)
#
# Multi-stage: the workspace is built once in the official Rust image; each final image is
# distroless "cc" (glibc, libgcc, CA certificates; no shell, no package manager) running as
# the non-root user 65532, the uid the operator's pod security contexts expect. Both binaries
# use rustls (no OpenSSL). No HEALTHCHECK: Kubernetes probes /livez and /readyz.

ARG RUST_VERSION=1.92
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The workspace (.dockerignore keeps the context to the manifests, the crates and the
# migrations the runner embeds with sqlx::migrate!).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p learning-runner -p learning-operator \
 && install -D -m 0755 target/release/learning-runner /out/learning-runner \
 && install -D -m 0755 target/release/learning-operator /out/learning-operator

FROM gcr.io/distroless/cc-debian12:nonroot AS runner
COPY --from=build /out/learning-runner /usr/local/bin/learning-runner
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/learning-runner"]
CMD ["run"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/learning-operator /usr/local/bin/learning-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/learning-operator"]
CMD ["run"]
