"""Phoneme input: `[[…]]` blocks of IPA inside the text an engine gets (Piper's own convention).

The core puts a block where the lexicon, an inline override or SSML `<phoneme>` gives a word's IPA, and
only for engines whose capabilities say `phonemes=True`. Piper reads the blocks itself (espeak-ng IPA,
one symbol per character); Kokoro and hibari read misaki's alphabet, which writes diphthongs and
affricates as one letter, so `to_misaki` rewrites IPA into it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

BLOCK = re.compile(r"\[\[([^\[\]]*)\]\]")
# IPA → misaki (Kokoro v1.0's English alphabet): longest sequences first.
_MISAKI = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("əʊ", "Q"), ("t͡ʃ", "ʧ"),
           ("d͡ʒ", "ʤ"), ("tʃ", "ʧ"), ("dʒ", "ʤ"), ("ɝ", "ɜɹ"), ("g", "ɡ"), ("r", "ɹ"), ("ʲ", ""), ("'", "ˈ"),
           (".", ""), ("‿", " "), ("͡", ""))


def to_misaki(ipa: str) -> str:
    """IPA as Kokoro and hibari spell it."""
    for old, new in _MISAKI:
        ipa = ipa.replace(old, new)
    return ipa


def block_spans(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_block) in order: the stretches of text between blocks, and each block `[[…]]` whole."""
    pos = 0
    for match in BLOCK.finditer(text):
        if match.start() > pos:
            yield pos, match.start(), False
        yield match.start(), match.end(), True
        pos = match.end()
    if pos < len(text):
        yield pos, len(text), False


def split_blocks(text: str) -> Iterator[tuple[str, bool]]:
    """(piece, is_phonemes) in order: the text between blocks, and each block's phonemes."""
    for start, end, block in block_spans(text):
        yield (text[start + 2:end - 2].strip(), True) if block else (text[start:end], False)
