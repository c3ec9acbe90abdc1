# The C extension classifier/_native_focus*.c (optional: classifier.text falls back to Python without it).

from classifier.text import FocusedText

FEW_SHOT_MIN_CHARS: int
PREAMBLE_CHARS: int
FEW_SHOT_SCAN_CHARS: int
MIN_FEW_SHOT_BLOCKS: int
PATTERNS: tuple[str, str, str]  # the regexes of classifier.text it reproduces

def bind(cls: type[FocusedText], /) -> None:
    """Set the class focus_final_item returns (classifier.text.FocusedText)."""

def focus_final_item(text: str, /) -> FocusedText:
    """Exactly what classifier.text._focus_final_item_python returns."""
