"""The optional generation settings of an OpenAI Chat Completions request, validated.

- `tools` (OpenAI function tools), `tool_choice` and `parallel_tool_calls` go to OpenAI and OpenRouter as they are,
  and to Anthropic in its own shapes. The deprecated `functions` / `function_call` are refused (400), not ignored.
- Sampling settings (`top_p`, `seed`, `presence_penalty`, `frequency_penalty`) reach OpenAI and OpenRouter models
  that take sampling settings (not reasoning models, which refuse them). Anthropic gets none of them: it has no seed
  or penalties, and its current models refuse `top_p` together with `temperature`.
- `response_format` goes to OpenAI and OpenRouter as it is; Anthropic is asked for JSON (and the schema) in the
  system prompt.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError

RANGES = {"top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0)}
FORMATS = ("text", "json_object", "json_schema")
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sampling(body: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (low, high) in RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if not _number(value) or not low <= value <= high:
            raise ValidationError({name: f"must be a number between {low:g} and {high:g}"})
        out[name] = value
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not -(2**63) <= seed < 2**63:
            raise ValidationError({"seed": "must be a 64-bit integer"})
        out["seed"] = seed
    return out


def response_format(value: Any) -> dict[str, Any] | None:
    """None for plain text; else {"type": "json_object"} or {"type": "json_schema", "json_schema": {name, schema, …}}."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in FORMATS:
        raise ValidationError({"response_format.type": f"must be one of {', '.join(FORMATS)}"})
    if value["type"] == "text":
        return None
    if value["type"] == "json_object":
        return {"type": "json_object"}
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValidationError({"response_format.json_schema.name": "required: a name for the schema"})
    if not isinstance(spec.get("schema", {}), dict):
        raise ValidationError({"response_format.json_schema.schema": "must be a JSON Schema object"})
    return {"type": "json_schema", "json_schema": spec}


def tool_definitions(raw: Any, legacy: Any = None) -> list[dict[str, Any]]:
    """OpenAI function tools: each {"type": "function", "function": {"name", "description"?, "parameters"?}}.
    `legacy` is the deprecated `functions` list: refused by name rather than silently ignored."""
    if legacy is not None:
        raise ValidationError({"functions": "functions and function_call are deprecated by OpenAI and not supported: "
                                            "send them as tools and tool_choice"})
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError({"tools": "must be a list"})
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise ValidationError({f"tools[{i}]": 'must be {"type": "function", "function": {"name": …, "parameters": {…}}}'})
        if not isinstance(function.get("name"), str) or not TOOL_NAME.fullmatch(function["name"]):
            raise ValidationError({f"tools[{i}].function.name": "required: 1 to 64 letters, digits, _ or -"})
        if not isinstance(function.get("parameters", {}), dict):
            raise ValidationError({f"tools[{i}].function.parameters": "must be a JSON Schema object"})
        if not isinstance(function.get("description", ""), str):
            raise ValidationError({f"tools[{i}].function.description": "must be a string"})
    return raw


def parallel_tool_calls(value: Any) -> bool | None:
    """False asks for at most one tool call per reply (Anthropic: `disable_parallel_tool_use`)."""
    if value is not None and not isinstance(value, bool):
        raise ValidationError({"parallel_tool_calls": "must be a boolean"})
    return value


def tool_choice(value: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | str | None:
    """"none" | "auto" | "required", or {"type": "function", "function": {"name": one of the (validated) tools}}."""
    if value is None:
        return None
    if isinstance(value, str) and value in ("none", "auto", "required"):
        return value
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise ValidationError({"tool_choice": 'must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}'})
    if name not in {tool["function"]["name"] for tool in tools}:
        raise ValidationError({"tool_choice.function.name": f"{name!r} is not one of the request's tools"})
    return {"type": "function", "function": {"name": name}}
