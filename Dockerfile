# The headless image-search service: `image-search serve` (HTTP API and web page) on ONNX Runtime, no Qt,
# no TensorFlow. See docs/service.md (README "Run as a service") and docker-compose.yml.
#
#   docker build -t image-search .          (BuildKit: the default builder since Docker 23)
#   docker run -d -p 127.0.0.1:5000:5000 -e IMAGE_SEARCH_API_TOKEN=... \
#       -v ~/Pictures:/photos:ro -v image-search-data:/data -v image-search-weights:/weights image-search
#
# BASE may be any Debian-based image with Python 3.11 or 3.12 and its venv module (the tests use one made
# with debootstrap, where python3 is /usr/bin/python3 rather than /usr/local/bin/python3).
# Behind a TLS-intercepting proxy, hand pip the CA bundle: `--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt`.
ARG BASE=python:3.11-slim-bookworm

# The dependency list alone, so that the layer installing it is reused until the list itself changes.
FROM ${BASE} AS requirements
COPY pyproject.toml /
RUN python3 -c "import tomllib; print(*tomllib.load(open('/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
    >/requirements.txt

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY --from=requirements /requirements.txt .
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/venv/bin/pip install -r requirements.txt "setuptools>=69"
COPY pyproject.toml .
COPY README.md .
COPY core core
COPY desktop desktop
COPY resources resources
COPY image_search.py .
# Offline: the dependencies and the build backend are already in the venv.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM ${BASE}
# A fixed uid, so that files on the volumes keep one owner across image rebuilds.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/app app \
    && mkdir -p /data /weights \
    && chown app:app /data /weights
COPY --from=builder /opt/venv /opt/venv
# Inside the container the server listens on all addresses, so it refuses to start without a token
# (IMAGE_SEARCH_API_TOKEN, or a Docker secret file named by IMAGE_SEARCH_API_TOKEN_FILE).
# The gem descriptor needs the "notop" ImageNet file; put it on the weights volume (docs/service.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IMAGE_SEARCH_DATA_DIR=/data \
    IMAGE_SEARCH_WEIGHTS=/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
    IMAGE_SEARCH_API_HOST=0.0.0.0 \
    IMAGE_SEARCH_API_PORT=5000
VOLUME ["/data", "/weights"]
USER app
WORKDIR /home/app
EXPOSE 5000
# /api/health needs no token; it answers 503 (urlopen raises, exit 1) until the model can be loaded.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('IMAGE_SEARCH_API_PORT', '5000'), timeout=4)"]
# Exec form: the Python process is PID 1 and gets SIGTERM from `docker stop` itself; serve() stops on it.
CMD ["image-search", "serve"]
