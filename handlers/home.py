"""App Home: a dashboard of every environment (live version, lock, last and in-flight deployment),
redrawn with views.publish whenever the user opens the tab; the hosts are read on the bot's executor."""

from __future__ import annotations

from slack_bolt import App

from handlers import blocks
from handlers.context import Bot


def register(app: App, bot: Bot) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        if event.get("tab", "home") == "home":
            bot.job(publish_home, bot, event["user"])


def publish_home(bot: Bot, user: str) -> None:
    bot.client.views_publish(user_id=user, view=blocks.home_view(bot.status(None)))
