# syntax=docker/dockerfile:1
# Two images from one file, each a few tens of MB on distroless, running as a non-root user:
#   docker build --target api -t steadfast-api .        the API, with the web app at /
#   docker build --target workers -t steadfast-workers . the worker pools, `migration` and the
#                                                        `steadfast` command line
# Both carry `probe`, the health check (distroless has no shell or curl).

# The web app. Angular 22 needs Node >= 22.22.
FROM node:24-bookworm-slim AS web
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npx ng build

# The binaries. The registry and target directory are build caches, kept between builds.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Symbols stripped: about a third of each binary, and nothing a panic message needs.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin api --bin workers --bin probe --bin migration --bin steadfast \
    && mkdir -p /out/bin /out/data \
    && cp target/release/api target/release/workers target/release/probe \
       target/release/migration target/release/steadfast /out/bin/

# glibc and libgcc, CA certificates for webhooks; uid 65532, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build --chown=65532:65532 /out/data /var/lib/steadfast
WORKDIR /var/lib/steadfast
COPY --from=build /out/bin/probe /usr/local/bin/probe
USER 65532:65532
ENV RUST_LOG=info LOG_FORMAT=json

FROM runtime AS api
COPY --from=build /out/bin/api /usr/local/bin/api
COPY --from=build /out/bin/migration /usr/local/bin/migration
COPY --from=web /src/frontend/dist/browser /usr/share/steadfast/web
# Production mode: the development JWT secret is refused, GraphiQL and introspection are off,
# and the first admin needs BOOTSTRAP_ADMIN_TOKEN. Metrics and the detailed readiness answer on
# the operators' port (9464) only, which no Ingress or proxy of ours routes to.
ENV API_ADDR=0.0.0.0:8080 OPS_ADDR=0.0.0.0:9464 STATIC_DIR=/usr/share/steadfast/web \
    STEADFAST_ENV=production
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/probe", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/api"]

FROM runtime AS workers
COPY --from=build /out/bin/workers /usr/local/bin/workers
COPY --from=build /out/bin/migration /usr/local/bin/migration
COPY --from=build /out/bin/steadfast /usr/local/bin/steadfast
ENV METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/probe", "http://127.0.0.1:9464/health"]
ENTRYPOINT ["/usr/local/bin/workers"]
