# deploybot: the Slack bot (HTTP on :3000, or Socket Mode when SLACK_APP_TOKEN is set).
# docker build -t deploybot . && docker run -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET \
#   -v $PWD/deploy.yml:/app/deploy.yml:ro -v deploybot-data:/data -p 3000:3000 deploybot
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DEPLOYBOT_CONFIG=/app/deploy.yml DATABASE_URL=sqlite:////data/deploybot.db
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin deploybot \
    && mkdir -p /app /data && chown deploybot:deploybot /data
WORKDIR /app
USER deploybot
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=2).status != 200)"
CMD ["deploybot", "serve", "--port", "3000"]
