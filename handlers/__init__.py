"""Slack front end: parse, authorize and render. Calls bot.service; never SSH or SQL."""
