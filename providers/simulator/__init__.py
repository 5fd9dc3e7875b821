"""Local HTTP simulator of the Anthropic, OpenAI and OpenRouter APIs (see app.py)."""

from .app import SimulatorApp, normalize_rule
from .server import SimulatorServer
from .wire import ANTHROPIC_NO_TEMPERATURE, FAULT_KINDS

__all__ = ["ANTHROPIC_NO_TEMPERATURE", "FAULT_KINDS", "SimulatorApp", "SimulatorServer", "normalize_rule"]
