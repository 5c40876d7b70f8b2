"""Text preparation: normalisation and segmentation into the pieces an engine synthesizes."""

from voxgate.text.normalize import is_speakable, normalize
from voxgate.text.segment import (
    DEFAULT_POLICY,
    SENTENCE_POLICY,
    Segmenter,
    SegmentPolicy,
    cut_at_word,
    split_text,
)

__all__ = [
    "DEFAULT_POLICY",
    "SENTENCE_POLICY",
    "SegmentPolicy",
    "Segmenter",
    "cut_at_word",
    "is_speakable",
    "normalize",
    "split_text",
]
