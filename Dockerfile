# syntax=docker/dockerfile:1
# One image for every role: `purelb allocator | agent | embedded | apiserver | status`.
# Stage 1 compiles the Cython hot path into a wheel; stage 2 installs only wheels, so the
# runtime image carries no compiler, no Cython and no generated C.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# gcc and libc headers build the optional extension; without them purelb would fall back
# to pure Python, which we refuse here (see the check below).
# DL3008 (pin apt versions) is skipped on purpose: the base image tag pins the Debian
# release, and exact package versions vanish from the archive with each security update,
# which would break the build rather than make it reproducible. Only the build stage uses apt.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY native/ native/
COPY purelb/ purelb/
COPY bench/ bench/
COPY deploy/crds/ deploy/crds/
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -c "import zipfile,glob,sys; names=zipfile.ZipFile(glob.glob('/wheels/purelb-*.whl')[0]).namelist(); sys.exit(0 if any(n.startswith('purelb/_native') for n in names) else 'native extension missing from wheel')"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="purelb" \
      org.opencontainers.image.description="Bare-metal Kubernetes LoadBalancer (allocator and node agent)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/purelb-*.whl \
 && rm -rf /wheels \
 && python -c "import purelb.fast as f; assert f.IMPLEMENTATION == 'native', f.IMPLEMENTATION; import purelb.controllers.embedded as e; assert (e.default_crd_dir() / 'servicegroup.yaml').exists()"
# Non-root by default (the allocator); the agent's DaemonSet runs it as root with only
# NET_ADMIN and NET_RAW.
USER 65534:65534
EXPOSE 7472
ENTRYPOINT ["purelb"]
CMD ["--help"]
