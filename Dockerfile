# syntax=docker/dockerfile:1
# mcdrop on CPU: torch comes from the CPU wheel index (a CUDA build would add gigabytes).
# It listens on 0.0.0.0 and refuses to start without an API key: pass MCDROP_API_KEYS
# (KEY or KEY:admin, comma-separated) or MCDROP_API_KEY_FILE (a mounted secret).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv \
    && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
# The runtime set that `make serve` installs (the serve extra), before the code is copied: an
# edit of app/ rebuilds only the small layer below. No app/ yet: the package is empty here.
COPY pyproject.toml README.md ./
RUN pip install "./[serve]"
COPY app ./app
# pip leaves last: the runtime stage's venv holds what serving needs, and no installer
# (setuptools stays: torch declares it).
RUN pip install --no-deps --force-reinstall ./ \
    && pip uninstall --yes pip

# The runtime stage installs nothing: no compiler, no pip in its venv, no dev or test tools.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MCDROP_HOST=0.0.0.0 \
    MCDROP_PORT=8080 \
    MCDROP_MODELS_DIR=/srv/mcdrop/models \
    MCDROP_CONFIG=/srv/mcdrop/config/default.yaml \
    MCDROP_REQUIRE_AUTH=true
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mcdrop
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/mcdrop
COPY config ./config
COPY models ./models
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MCDROP_PORT', '8080'), timeout=2)"]
CMD ["mcdrop", "serve"]
