# vitaltwin service image: worker, producer, API. Build: docker build -t vitaltwin .
FROM python:3.11-slim AS base

# torch from PyPI is a multi-GB CUDA build. To ship a CPU-only image, pass the CPU wheel index
# of the PyTorch project: --build-arg TORCH_INDEX_URL=<that index>.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VITALTWIN_DATA_DIR=/var/lib/vitaltwin

RUN useradd --create-home --uid 10001 vitaltwin \
    && mkdir -p /var/lib/vitaltwin && chown vitaltwin /var/lib/vitaltwin

WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY models ./models
COPY simulators ./simulators
COPY streams ./streams
COPY dashboards ./dashboards
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --extra-index-url "$TORCH_INDEX_URL" . ; \
    else \
        pip install . ; \
    fi

USER vitaltwin
WORKDIR /var/lib/vitaltwin
ENTRYPOINT ["vitaltwin"]
CMD ["--help"]
