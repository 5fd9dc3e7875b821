# The chat fixtures live in tests/chat_fixtures.py (a plugin, so every test package can use them).
from tests.chat_fixtures import CHAIN, chain_target, model, post_message, sse_events  # noqa: F401
