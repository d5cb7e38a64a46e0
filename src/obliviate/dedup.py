"""Exact and near-duplicate texts: MinHash over word n-gram shingles (datasketch's LSH index).

Sampling the same model from similar seeds gives many near-copies; each adds tokens to the budget
but no coverage. A text is an exact duplicate when its normalised form (lower case, runs of
whitespace as one space) was seen; a near duplicate when the estimated Jaccard similarity of its
word n-gram sets with a kept text reaches the threshold (Broder 1997, "On the resemblance and
containment of documents"; MinHash LSH as in datasketch).
"""

from __future__ import annotations

import hashlib
import re

from obliviate.errors import ConfigError

__all__ = ["DuplicateFilter", "shingles"]

NUM_PERM = 128  # MinHash permutations: Jaccard estimates within about +-0.09 (1/sqrt(128))


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def shingles(text: str, n: int = 3) -> set[str]:
    """The set of word n-grams of a text, lower-cased (the whole text for fewer than n words)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class DuplicateFilter:
    """Remembers kept texts; says whether a new one repeats one of them.

    Args:
        threshold: Jaccard similarity of word n-gram sets from which a text is a near duplicate,
            in (0, 1]; 1 keeps all but exact duplicates.
        ngram: words per shingle.
    """

    def __init__(self, threshold: float = 0.7, ngram: int = 3):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ConfigError(f"near-duplicate threshold (--dedup-threshold) must be in (0, 1], got {threshold!r}; "
                              "0.7 is the usual choice, 1 keeps all but exact duplicates.")
        self.threshold, self.ngram = float(threshold), ngram
        self._exact: set[str] = set()
        self._lsh = None
        self._minhashes: dict = {}  # key -> MinHash of each kept text, to confirm LSH candidates
        if self.threshold < 1:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(threshold=self.threshold, num_perm=NUM_PERM)

    def _minhash(self, text: str):
        from datasketch import MinHash

        minhash = MinHash(num_perm=NUM_PERM, seed=1)
        minhash.update_batch([s.encode("utf-8") for s in shingles(text, self.ngram)])
        return minhash

    def check(self, text: str) -> str | None:
        """``"duplicate"``, ``"near_duplicate"``, or None for a new text (then remembered)."""
        key = hashlib.sha256(_normalise(text).encode("utf-8")).hexdigest()
        if key in self._exact:
            return "duplicate"
        if self._lsh is not None:
            minhash = self._minhash(text)
            # LSH banding finds candidates; the MinHash estimate confirms them
            if any(minhash.jaccard(self._minhashes[k]) >= self.threshold for k in self._lsh.query(minhash)):
                return "near_duplicate"
            self._lsh.insert(key, minhash)
            self._minhashes[key] = minhash
        self._exact.add(key)
        return None
