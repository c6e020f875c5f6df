"""deploybot: the deploy engine, its store and its use cases. Nothing in here knows about Slack."""

import logging

# Log lines are for `deploybot serve`, which configures where they go (bot/logs.py). Elsewhere (the CLI, the demo)
# nothing is configured, and Python would print warnings raw on the terminal beside the progress the user reads.
logging.getLogger("bot").addHandler(logging.NullHandler())
