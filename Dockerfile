# The one image the receiver (`serve`, a Deployment) and the sweep (`sweep`, a CronJob) run;
# k8s/ deploys it. Build from the repository root:
#
#   docker build -t ecr-cleaner:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=https://github.com/OWNER/ecr-cleaner .
#
# The build arguments become the OCI labels (org.opencontainers.image.*) and the revision
# that `ecr-cleaner --version` prints; the build context holds no .git to read it from.
# README "Build the image" has the multi-arch (linux/amd64, linux/arm64) buildx recipe.
#
# The Python the tests run on (3.11), Debian 12 like CI. A tag moves with security rebuilds;
# for byte-for-byte reproducible builds pin the digest you have reviewed:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: resolve nothing, install the pinned lock into a venv --------------------------
FROM ${PYTHON_IMAGE} AS build

RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, so this layer is rebuilt only when the lock changes. Wheels only: every
# runtime pin ships wheels for linux amd64/arm64, so no compiler is needed, and a missing
# wheel fails the build here instead of pulling in a toolchain.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --only-binary=:all: --requirement requirements.lock

# The package itself (not editable): pip byte-compiles it, which matters because the root
# filesystem is read-only at run time. README.md and LICENSE are read by pyproject; setup.py
# stamps the revision into the package (`ecr-cleaner --version`).
ARG REVISION=""
COPY pyproject.toml setup.py README.md LICENSE ./
COPY cleaner ./cleaner
RUN ECR_CLEANER_REVISION="$REVISION" \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps ./ \
    && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# --- runtime: the venv and nothing else from the build -----------------------------------
FROM ${PYTHON_IMAGE}

# Annotations of the OCI image spec (annotations.md, "Pre-Defined Annotation Keys").
# VERSION is cleaner.__version__ (tests/test_deploy.py checks the default); REVISION the
# full commit; CREATED an RFC 3339 time; SOURCE the repository's URL.
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="ecr-cleaner" \
      org.opencontainers.image.description="Prunes Amazon ECR repositories with exact lifecycle-policy semantics" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"

# Bytecode was compiled in the build stage; nothing may try to write it next to the sources.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The base image's own installer is not needed at run time: nothing is installed there.
RUN python -m pip uninstall --yes --disable-pip-version-check pip setuptools wheel

COPY --from=build /opt/venv /opt/venv

# Numeric, so Kubernetes can verify runAsNonRoot without an /etc/passwd lookup; the same
# number as runAsUser in k8s/.
USER 10001:10001

# The receiver's port (`serve --port`, default 8080); the sweep listens on nothing.
EXPOSE 8080
ENTRYPOINT ["ecr-cleaner"]
CMD ["--help"]
