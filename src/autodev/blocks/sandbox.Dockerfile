# The autodev sandbox image, for machines that reach an image registry.
# Without one, `autodev image build` makes the same image from Debian packages (mmdebstrap).
FROM python:3.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git procps ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash autodev && chmod 1777 /home/autodev \
 && python -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir pytest \
 && chmod -R a+rwX /opt/venv \
 && mkdir -p /workspace && chmod 1777 /workspace
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /workspace
USER autodev
CMD ["sleep", "infinity"]
