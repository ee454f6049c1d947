# The service image: CPU Paddle Inference, the bundled models baked in (mount ./models to override).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
# Runtime dependencies only: the training extras (matplotlib, ...) stay out of the image.
RUN pip install --upgrade pip && pip install .
# The compose file's `gpu` profile swaps in Paddle's CUDA build (same `paddle` module, other wheel).
ARG PADDLE_GPU_PACKAGE=""
ARG PADDLE_GPU_INDEX=""
RUN if [ -n "$PADDLE_GPU_PACKAGE" ]; then \
        pip uninstall -y paddlepaddle && pip install --extra-index-url "$PADDLE_GPU_INDEX" "$PADDLE_GPU_PACKAGE"; \
    fi

FROM python:3.11-slim
# Paddle's CPU kernels link against OpenMP.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home-dir /srv app
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY models ./models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 APP_MODEL_DIR=/srv/models APP_DEVICE=cpu
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
