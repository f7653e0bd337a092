# The rewardscope package on a slim Python: the core only (numpy, scipy, prometheus-client,
# pyyaml), enough for `rewardscope simulate`, `summary`, `rules` and `dashboards`.
# The GPU trainer image is docker/trainer.Dockerfile.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /tmp/src/
COPY rewardscope /tmp/src/rewardscope
RUN pip install /tmp/src && rm -rf /tmp/src

RUN useradd --create-home --uid 10001 rewardscope \
    && mkdir /home/rewardscope/monitoring_data \
    && chown rewardscope:rewardscope /home/rewardscope/monitoring_data
USER rewardscope
WORKDIR /home/rewardscope

EXPOSE 19464
ENTRYPOINT ["rewardscope"]
CMD ["simulate", "--scenario", "healthy", "--rate", "2", "--host", "0.0.0.0", "--port", "19464", "--steps", "1800"]
