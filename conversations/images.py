"""Images sent with a user message, as both client APIs take them: an http(s) URL the provider fetches, or a base64
data URL of a PNG, JPEG, GIF or WebP image, each with an optional OpenAI `detail` ("auto" / "low" / "high").

`Message.images` stores them. A REST message keeps each image whole (`{"url", "detail"}`), because the conversation's
later turns are built from what is stored. `/v1/chat/completions` clients send their whole context every time, so
there only a summary is stored: the URL, or for inline data its media type, size and SHA-256. The API shows the
summary either way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from rest_framework.exceptions import ValidationError

from providers.types import IMAGE_MEDIA_TYPES, ImagePart

MAX_IMAGES = 20  # per message (Anthropic takes up to 100 per request, OpenAI more; a chat rarely needs many)
IMAGE_DETAILS = ("auto", "low", "high")
_DATA_URL_SHAPE = re.compile(r"data:([a-z]+/[-+.a-z0-9]+);base64,([A-Za-z0-9+/=\s]+)", re.IGNORECASE)


def parse_image(spec: Any, field: str) -> ImagePart:
    """`{"url": ..., "detail": ...}` (or the URL alone) -> ImagePart; ValidationError naming `field` otherwise."""
    spec = {"url": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise ValidationError({f"{field}.url": "required: an http(s) URL or a base64 data URL"})
    url, detail = spec["url"].strip(), spec.get("detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise ValidationError({f"{field}.detail": f"must be one of {', '.join(IMAGE_DETAILS)}"})
    if url.startswith("data:"):
        shape = _DATA_URL_SHAPE.fullmatch(url)
        if shape is None:
            raise ValidationError({f"{field}.url": "a data URL must be data:<media type>;base64,<data>"})
        if shape.group(1).lower() not in IMAGE_MEDIA_TYPES:
            raise ValidationError({f"{field}.url": f"images must be one of {', '.join(IMAGE_MEDIA_TYPES)}"})
        data = "".join(shape.group(2).split())  # providers take no whitespace
        url = f"data:{_sniffed_type(data, f'{field}.url')};base64,{data}"
    elif not url.lower().startswith(("https://", "http://")) or not url.isprintable():  # no NUL, no lone surrogate
        raise ValidationError({f"{field}.url": "must be an http(s) URL or a base64 data URL"})
    return ImagePart(url=url, detail=detail or "")


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))


def _sniffed_type(data: str, field: str) -> str:
    """The image type its bytes say (Anthropic refuses an image whose declared type is not its real one, and a
    REST message's images are sent again with every later turn); a ValidationError if it is none of the four."""
    try:
        head = base64.b64decode(data, validate=True)[:12]
    except (binascii.Error, ValueError):
        raise ValidationError({field: "the data is not valid base64"}) from None
    for signature, media_type in _SIGNATURES:
        if head.startswith(signature):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise ValidationError({field: f"the data is not a {', '.join(IMAGE_MEDIA_TYPES)} image"})


def parse_images(raw: Any, field: str = "images") -> tuple[ImagePart, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValidationError({field: "must be a list of images"})
    if len(raw) > MAX_IMAGES:
        raise ValidationError({field: f"at most {MAX_IMAGES} images per message"})
    return tuple(parse_image(spec, f"{field}[{i}]") for i, spec in enumerate(raw))


def stored_whole(images: tuple[ImagePart, ...]) -> list[dict]:
    return [{"url": image.url, **({"detail": image.detail} if image.detail else {})} for image in images]


def stored_summary(images: tuple[ImagePart, ...]) -> list[dict]:
    return [_summary(image.url) for image in images]


def _summary(url: str) -> dict:
    inline = ImagePart(url).inline()
    if inline is None:
        return {"url": url.split("?", 1)[0].split("#", 1)[0]}  # no query: it may hold a signed link's token
    data = inline[1].encode()
    return {"media_type": inline[0], "base64_chars": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def shown(stored: list[dict]) -> list[dict]:
    """What the API shows of a message's stored images: URLs as sent, inline data as its summary."""
    return [_summary(entry["url"]) if "url" in entry else entry for entry in stored or ()]


def replayed(stored: list[dict]) -> tuple[ImagePart, ...]:
    """The stored images that can be sent again with a later turn (summaries of inline data cannot)."""
    return tuple(ImagePart(entry["url"], entry.get("detail", "")) for entry in stored or () if "url" in entry)
