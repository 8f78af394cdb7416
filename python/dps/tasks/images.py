"""Images of prompts: decoded (and so checked) with Pillow, kept as encoded bytes."""

from __future__ import annotations

import io
from typing import Any


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - matplotlib, a dependency, needs Pillow
        raise ImportError("image prompts need Pillow: pip install pillow") from e
    return Image


def decode_image(data: bytes) -> Any:
    """An encoded image file (PNG, JPEG, ...) as an RGB PIL image, fully read; ValueError when the
    bytes are not an image Pillow can decode."""
    image_module = _pil()
    if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
        raise ValueError("no image bytes")
    try:
        with image_module.open(io.BytesIO(bytes(data))) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # Pillow raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ValueError(f"the image does not decode ({type(e).__name__}: {e})") from None


def encode_png(image: Any) -> bytes:
    """A PIL image as PNG bytes (deterministic for the same pixels and Pillow)."""
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
