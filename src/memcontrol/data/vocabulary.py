"""The words of the built-in captions, kept apart so that a tokenizer can import them cheaply.

The built-in base model uses a word-level tokenizer: every word a built-in caption can contain,
and every case code, must be in its vocabulary or the caption would not be followed.
"""

from __future__ import annotations

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_CAPTION = "a handwritten digit {name}"

FACE_CLASSES = ("face", "background")
FACE_CAPTION = "a photo of a {name}"

CASE_SUFFIX = " case {code}"
CASE_CODES = [f"k{i:03d}" for i in range(1000)]


def _words(*captions: str) -> tuple[str, ...]:
    return tuple(sorted({word for caption in captions for word in caption.split()}))


# Every word of the built-in captions except the case codes themselves (see CASE_CODES).
CAPTION_WORDS = _words(
    *(DIGIT_CAPTION.format(name=name) for name in DIGIT_NAMES),
    *(FACE_CAPTION.format(name=name) for name in FACE_CLASSES),
    CASE_SUFFIX.format(code=""),
)
