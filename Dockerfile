FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY topics topics
COPY processors processors
COPY streams streams
COPY ops ops
RUN pip install --no-cache-dir -e . && mailroom --help >/dev/null
ENV MAILROOM_METRICS_PORT=9464
EXPOSE 9464
