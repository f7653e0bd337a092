# rewardscope with the train extra on a CUDA base, for `rewardscope train` on an NVIDIA GPU.
# Built by docker/docker-compose.gpu.yml (build context: the repository root).
# PyPI's Linux torch wheels bundle their CUDA 12 libraries; the base image supplies the
# CUDA user-space setup the NVIDIA container toolkit expects.
FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu 22.04's Python is 3.10, the oldest rewardscope supports.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY pyproject.toml README.md /tmp/src/
COPY rewardscope /tmp/src/rewardscope
RUN pip install "/tmp/src[train]" && rm -rf /tmp/src

RUN useradd --create-home --uid 10001 rewardscope \
    && mkdir -p /home/rewardscope/monitoring_data /home/rewardscope/.cache \
    && chown -R rewardscope:rewardscope /home/rewardscope
USER rewardscope
WORKDIR /home/rewardscope
ENV HF_HOME=/home/rewardscope/.cache/huggingface

EXPOSE 19464
ENTRYPOINT ["rewardscope"]
CMD ["train", "--device", "cuda"]
