# The fraudstream worker image (used by docker-compose.yml and deploy/k8s).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY stream ./stream
COPY console ./console
RUN pip install --no-cache-dir . && useradd --system --uid 10001 fraudstream \
    && install -d -o fraudstream /var/lib/fraudstream
# faust's data directory: the image's /app is root's, the worker is not.
ENV FRAUD_DATA_DIR=/var/lib/fraudstream
USER fraudstream
EXPOSE 6066
ENTRYPOINT ["fraudstream"]
CMD ["worker"]
