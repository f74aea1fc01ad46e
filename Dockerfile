# keras-model-service: one image, the same `keras-service serve` as on a laptop.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_SERVICE_DATA_DIR=/data

WORKDIR /app
# Dependencies first, so that a code change does not reinstall TensorFlow.
COPY pyproject.toml README.md ./
RUN mkdir service schemas && touch service/__init__.py schemas/__init__.py \
    && pip install . && pip uninstall -y keras-model-service
COPY service ./service
COPY schemas ./schemas
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 keras \
    && mkdir -p /data && chown keras:keras /data
USER keras
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"

# Listening beyond loopback needs an API key first (or --insecure): create one with
#   docker run --rm -v keras-data:/data IMAGE keys create --tenant NAME --scopes admin
ENTRYPOINT ["keras-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
