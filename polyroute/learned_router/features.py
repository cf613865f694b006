"""Prompt features: hashed word/char n-gram TF-IDF plus a few dense shape statistics.

Everything is computed from the prompt text alone, on CPU, in well under a millisecond for short
prompts and a few milliseconds at 512 tokens. Hashing keeps the artifact free of a vocabulary; the
IDF table learnt at training time is the only state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (3, 5)
DEFAULT_BITS = 18
# Long prompts are cut before hashing: the opening carries the topic, and it bounds latency.
MAX_CHARS = 4000

_SYMBOLS = set(b"+-*/=^<>()[]{}|\\$%&#@~_")
_CODE = set(b"{}();=<>[]:")
_CLASS = np.zeros((256, 6), dtype=np.float32)
for _b in range(256):
    _CLASS[_b, 0] = float(48 <= _b <= 57)  # digit
    _CLASS[_b, 1] = float(65 <= _b <= 90)  # upper case
    _CLASS[_b, 2] = float(_b in _SYMBOLS)
    _CLASS[_b, 3] = float(_b >= 128)  # non-ASCII byte
    _CLASS[_b, 4] = float(_b in _CODE)
    _CLASS[_b, 5] = float(_b in b".!?")

DENSE_NAMES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "upper_frac",
    "symbol_frac",
    "non_ascii_frac",
    "code_frac",
    "sentence_marks",
    "mean_word_len",
    "long_word_frac",
    "type_token_ratio",
    "log_first_line",
    "log_max_line",
    "log_tail_lines_mean",
    "question_marks",
)


def dense_features(prompt: str) -> np.ndarray:
    """Shape statistics of one prompt (length, line structure, character classes, vocabulary)."""
    text = prompt[:MAX_CHARS * 4]
    raw = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    n = max(len(raw), 1)
    cls = _CLASS[raw].sum(axis=0) / n if len(raw) else np.zeros(6, dtype=np.float32)
    words = text.split()
    n_words = len(words)
    lines = [line for line in text.split("\n") if line.strip()] or [""]
    line_lens = [len(line) for line in lines]
    word_lens = [len(w) for w in words]
    tail = line_lens[-5:]
    return np.array(
        [
            math.log1p(len(prompt)),
            math.log1p(n_words),
            math.log1p(len(lines)),
            cls[0],
            cls[1],
            cls[2],
            cls[3],
            cls[4],
            min(cls[5] * n, 50.0),
            (sum(word_lens) / n_words) if n_words else 0.0,
            (sum(1 for x in word_lens if x > 8) / n_words) if n_words else 0.0,
            (len(set(words)) / n_words) if n_words else 0.0,
            math.log1p(line_lens[0]),
            math.log1p(max(line_lens)),
            math.log1p(sum(tail) / len(tail)),
            min(text.count("?"), 10),
        ],
        dtype=np.float64,
    )


def dense_matrix(prompts: list[str]) -> np.ndarray:
    return np.vstack([dense_features(p) for p in prompts]) if prompts else np.zeros((0, len(DENSE_NAMES)))


def _word_vectorizer(bits: int) -> HashingVectorizer:
    return HashingVectorizer(
        ngram_range=WORD_NGRAMS, n_features=2**bits, alternate_sign=False, norm=None, dtype=np.float32
    )


def _char_vectorizer(bits: int) -> HashingVectorizer:
    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=CHAR_NGRAMS,
        n_features=2**bits,
        alternate_sign=False,
        norm=None,
        dtype=np.float32,
    )


@dataclass
class HashedCounts:
    """Raw hashed n-gram counts of a set of prompts (stateless, can be computed once and sliced)."""

    word: sp.csr_matrix
    char: sp.csr_matrix

    def rows(self, idx: np.ndarray) -> HashedCounts:
        return HashedCounts(word=self.word[idx], char=self.char[idx])


def hash_counts(prompts: list[str], bits: int = DEFAULT_BITS) -> HashedCounts:
    cut = [p[:MAX_CHARS] for p in prompts]
    return HashedCounts(
        word=sp.csr_matrix(_word_vectorizer(bits).transform(cut)),
        char=sp.csr_matrix(_char_vectorizer(bits).transform(cut)),
    )


def _idf(counts: sp.csr_matrix, min_df: int) -> np.ndarray:
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[df < min_df] = 0.0
    return idf


def _weigh(counts: sp.csr_matrix, idf: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sublinear TF-IDF rows, L2-normalised and scaled, as raw CSR parts (data, indices, row lengths)."""
    data = np.log1p(counts.data.astype(np.float32)) * idf[counts.indices]
    keep = data != 0
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[keep]
    data = data[keep]
    indices = counts.indices[keep]
    norms = np.sqrt(np.bincount(rows, weights=data.astype(np.float64) ** 2, minlength=counts.shape[0]))
    norms[norms == 0] = 1.0
    data = (data / norms[rows] * scale).astype(np.float32)
    return data, indices, np.bincount(rows, minlength=counts.shape[0])


@dataclass
class TextFeaturizer:
    """Sublinear TF-IDF over hashed word and char n-grams, each block L2-normalised."""

    bits: int
    word_idf: np.ndarray
    char_idf: np.ndarray
    char_weight: float = 1.0

    @classmethod
    def fit(cls, counts: HashedCounts, bits: int, min_df: int, char_weight: float = 1.0) -> TextFeaturizer:
        return cls(bits, _idf(counts.word, min_df), _idf(counts.char, min_df), char_weight)

    @property
    def n_features(self) -> int:
        return 2 * 2**self.bits

    def active_columns(self) -> np.ndarray:
        """Columns that can ever be non-zero (bucket seen in enough training prompts)."""
        return np.flatnonzero(np.concatenate([self.word_idf, self.char_idf]) > 0)

    def transform_counts(self, counts: HashedCounts) -> sp.csr_matrix:
        """Word block in columns [0, 2^bits), char block in [2^bits, 2^(bits+1))."""
        half = 2**self.bits
        wd, wi, wn = _weigh(counts.word, self.word_idf, 1.0)
        cd, ci, cn = _weigh(counts.char, self.char_idf, self.char_weight)
        n = counts.word.shape[0]
        # interleave the two blocks row by row (CSR rows must be contiguous)
        w_start = np.concatenate([[0], np.cumsum(wn)])
        c_start = np.concatenate([[0], np.cumsum(cn)])
        indptr = np.concatenate([[0], np.cumsum(wn + cn)])
        data = np.empty(indptr[-1], dtype=np.float32)
        indices = np.empty(indptr[-1], dtype=np.int32)
        for r in range(n):
            a, b = indptr[r], indptr[r] + wn[r]
            data[a:b] = wd[w_start[r] : w_start[r + 1]]
            indices[a:b] = wi[w_start[r] : w_start[r + 1]]
            data[b : indptr[r + 1]] = cd[c_start[r] : c_start[r + 1]]
            indices[b : indptr[r + 1]] = ci[c_start[r] : c_start[r + 1]] + half
        return sp.csr_matrix((data, indices, indptr), shape=(n, 2 * half))

    def transform(self, prompts: list[str]) -> sp.csr_matrix:
        return self.transform_counts(hash_counts(prompts, self.bits))
