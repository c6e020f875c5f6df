# deploybot: the Slack bot (HTTP on $DEPLOYBOT_PORT, or Socket Mode when SLACK_APP_TOKEN is set).
# docker build -t deploybot . && docker run -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET \
#   -v $PWD/deploy.yml:/app/deploy.yml:ro -v /etc/deploybot:/etc/deploybot:ro \
#   -v deploybot-data:/data -p 3000:3000 deploybot
# docs/container.md: volumes, the uid that must read the SSH key, stopping gracefully, compose.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
# tini runs as PID 1: it passes SIGTERM on to the bot (which then finishes or stops a running deploy at a stage
# boundary within DEPLOYBOT_SHUTDOWN_GRACE) and reaps orphaned child processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DEPLOYBOT_CONFIG=/app/deploy.yml DATABASE_URL=sqlite:////data/deploybot.db DEPLOYBOT_PORT=3000
COPY --from=build /install /usr/local
RUN groupadd --gid 10001 deploybot \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin deploybot \
    && mkdir -p /app /data && chown 10001:10001 /data
WORKDIR /app
# numeric, so a runtime (or Kubernetes' runAsNonRoot) can tell it is not root without reading /etc/passwd
USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000
# Exec form (no shell in between); the port is read from DEPLOYBOT_PORT, as CMD does.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DEPLOYBOT_PORT', '3000'), timeout=2)"]
ENTRYPOINT ["tini", "--"]
# `exec` replaces the shell, so the bot itself is tini's child and gets its signals.
CMD ["sh", "-c", "exec deploybot serve --port \"${DEPLOYBOT_PORT:-3000}\""]
