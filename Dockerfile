# fastserve in a container: `docker build -t fastserve .`, then serve a directory mounted at /srv:
#   docker run --rm -p 8000:8000 -v "$PWD/public:/srv:ro" fastserve
# or build an image of your own FROM this one with your files COPY'd to /srv (or your app and
# `CMD ["myapp:app"]`). Flags come as arguments or FASTSERVE_* variables.

# -- build: compile the wheel (Cython extensions) and collect every dependency as a wheel --------
FROM python:3.12-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastserve ./fastserve
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[metrics,yaml,dotenv]'

# -- runtime: the wheels only, no compiler, a user without privileges ---------------------------
FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fastserve
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels 'fastserve[metrics,yaml,dotenv]' \
    && rm -rf /tmp/wheels
WORKDIR /srv
USER 10001
ENV FASTSERVE_HOST=0.0.0.0 \
    FASTSERVE_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# 200 while serving; 503 (so: unhealthy) once the server drains after SIGTERM.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_fastserve/health' % os.environ.get('FASTSERVE_PORT', '8000'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fastserve"]
CMD ["/srv"]
