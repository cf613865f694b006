"""Prompt features: hashed word/char n-gram TF-IDF plus a few dense shape statistics.

Everything is computed from the prompt text alone, on CPU: about 0.3 ms for a 512-token prompt
(bench/router/bench_latency.py). Hashing keeps the artifact free of a vocabulary; the IDF table learnt
at training time is the only state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

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


# ---------------------------------------------------------------- hashed n-grams, in numpy
#
# The n-grams of scikit-learn's HashingVectorizer (word 1-2-grams of lower-cased ``\w\w+`` tokens,
# char_wb 3-5-grams), hashed with vectorised 64-bit polynomial hashes instead of one murmur call per
# n-gram from a Python loop: 4-5x faster at 512 tokens, where hashing was most of a routing decision.

_P = np.uint64(0x100000001B3)  # odd, so invertible modulo 2^64
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_BIGRAM = np.uint64(0x9E3779B97F4A7C15)


def _powers(base: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    acc = 1
    for i in range(n):
        out[i] = acc
        acc = (acc * base) % 2**64
    return out


# P^i and P^-i modulo 2^64: the hash of text[a:b] is (prefix[b] - prefix[a]) * P^-a
_POW = _powers(int(_P), MAX_CHARS + 1)
_INV_POW = _powers(pow(int(_P), -1, 2**64), MAX_CHARS + 1)
# ``\w`` for ASCII; every non-ASCII code point counts as a word character (letters, mostly)
_WORD_ASCII = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)], dtype=bool)
_EMPTY_U64 = np.zeros(0, dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads the polynomial hashes over the top bits."""
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def char_hashes(text: str) -> np.ndarray:
    """char_wb 3-5-grams: the n-grams inside each lower-cased word padded with one space each side."""
    # words joined by two spaces: a window lies inside one padded word iff it holds no double space
    c = _codes(" " + "  ".join(text.lower().split()) + " ")
    n_chars = len(c)
    if n_chars < 3:
        return _EMPTY_U64
    space = c == 32
    doubles = np.concatenate([[0], np.cumsum(space[:-1] & space[1:])])
    out = []
    h = c[:-1] * _P + c[1:]
    for n in (3, 4, 5):
        if n_chars < n:
            break
        h = h[:-1] * _P + c[n - 1 :]
        inside = (doubles[n - 1 :] - doubles[: n_chars - n + 1]) == 0
        out.append(h[inside] + np.uint64(n))
    return _mix(np.concatenate(out))


def word_hashes(text: str) -> np.ndarray:
    """Lower-cased ``\\w\\w+`` tokens, then bigrams of consecutive tokens."""
    c = _codes(text.lower()[:MAX_CHARS])  # lower() may lengthen ("İ" -> "i̇"); the power tables stop there
    if len(c) < 2:
        return _EMPTY_U64
    word = np.where(c < 128, _WORD_ASCII[np.minimum(c, 127)], True)
    edges = np.diff(np.concatenate([[False], word, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= 2
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return _EMPTY_U64
    prefix = np.concatenate([[np.uint64(0)], np.cumsum(c * _POW[: len(c)], dtype=np.uint64)])
    tokens = _mix((prefix[ends] - prefix[starts]) * _INV_POW[starts] + (ends - starts).astype(np.uint64))
    return np.concatenate([tokens, _mix(tokens[:-1] * _BIGRAM + tokens[1:])])


def _buckets(hashes: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted bucket ids (the top ``bits`` bits of each hash) and how often each occurs."""
    ids, counts = np.unique((hashes >> np.uint64(64 - bits)).astype(np.int32), return_counts=True)
    return ids, counts.astype(np.float32)


@dataclass(frozen=True)
class PromptCounts:
    """One prompt's hashed n-gram counts (bucket ids sorted, counts aligned)."""

    word_ids: np.ndarray
    word_counts: np.ndarray
    char_ids: np.ndarray
    char_counts: np.ndarray


def hash_one(prompt: str, bits: int = DEFAULT_BITS) -> PromptCounts:
    cut = prompt[:MAX_CHARS]
    return PromptCounts(*_buckets(word_hashes(cut), bits), *_buckets(char_hashes(cut), bits))


def _csr(parts: list[tuple[np.ndarray, np.ndarray]], bits: int) -> sp.csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(ids) for ids, _ in parts])]).astype(np.int64)
    indices = np.concatenate([ids for ids, _ in parts] or [np.zeros(0, dtype=np.int32)])
    data = np.concatenate([d for _, d in parts] or [np.zeros(0, dtype=np.float32)])
    return sp.csr_matrix((data, indices, indptr), shape=(len(parts), 2**bits))


@dataclass
class HashedCounts:
    """Raw hashed n-gram counts of a set of prompts (stateless, can be computed once and sliced)."""

    word: sp.csr_matrix
    char: sp.csr_matrix

    def rows(self, idx: np.ndarray) -> HashedCounts:
        return HashedCounts(word=self.word[idx], char=self.char[idx])


def hash_counts(prompts: list[str], bits: int = DEFAULT_BITS) -> HashedCounts:
    one = [hash_one(p, bits) for p in prompts]
    return HashedCounts(
        word=_csr([(c.word_ids, c.word_counts) for c in one], bits),
        char=_csr([(c.char_ids, c.char_counts) for c in one], bits),
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

    def weigh_one(self, counts: PromptCounts) -> tuple[np.ndarray, np.ndarray]:
        """One prompt's row of ``transform_counts`` as (column indices, values), without scipy."""
        blocks = (
            (counts.word_ids, counts.word_counts, self.word_idf, 1.0, 0),
            (counts.char_ids, counts.char_counts, self.char_idf, self.char_weight, 2**self.bits),
        )
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for ids, cnt, idf, scale, offset in blocks:
            w = np.log1p(cnt) * idf[ids]
            keep = w != 0
            w = w[keep]
            norm = float(np.sqrt(np.dot(w.astype(np.float64), w)))
            indices.append(ids[keep].astype(np.int64) + offset)
            values.append((w / norm * scale).astype(np.float32) if norm > 0 else w)
        return np.concatenate(indices), np.concatenate(values)

    def transform(self, prompts: list[str]) -> sp.csr_matrix:
        return self.transform_counts(hash_counts(prompts, self.bits))
