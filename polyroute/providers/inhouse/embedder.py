"""The embedding model: all-MiniLM-L6-v2 as int8 ONNX, pooled exactly as sentence-transformers.

sentence-transformers' all-MiniLM-L6-v2 is Transformer (max_seq_length 256, truncating) ->
Pooling (mean over the attention mask) -> Normalize (L2). The ONNX graph returns the
transformer's `last_hidden_state`; pooling and normalisation are done here, with the same
clamps (sum of mask >= 1e-9, norm >= 1e-12).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from polyroute.providers.inhouse.cpu import cpu_threads

DIMENSIONS = 384
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model
BATCH = 32


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling then L2 normalisation, for (batch, seq, dim) states."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    pooled = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None)


class Embedder:
    """Thread-safe: onnxruntime sessions and tokenizers may be shared across threads."""

    dimensions = DIMENSIONS

    def __init__(
        self, model_path: Path, tokenizer_path: Path, *, threads: int | None = None, expand_weights: bool = True
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.inter_op_num_threads = 1
        # The weights are stored int8 behind DequantizeLinear. onnxruntime's constant folding
        # expands them to float32 once at load: ~+100 MB RSS, but up to ~10x faster on short
        # inputs than dequantizing on every call (bench/inhouse/embed.py --compare-expand).
        if not expand_weights:
            so.add_session_config_entry("optimization.disable_specified_optimizers", "ConstantFolding")
        # Without the arena, memory returns after a big batch instead of staying at its peak.
        so.enable_cpu_mem_arena = False
        # Idle worker threads must not spin: they share the CPU with the event loop and the LLM.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: Any = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(tokenizer_path))
        tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
        tok.no_padding()  # each batch is padded to its own longest input below
        self._tokenizer = tok
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: list[str], should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]:
        """(unit vectors in input order, tokens processed). Blocking; checks `should_stop`
        between batches so an abandoned request frees the CPU."""
        encodings = self._tokenizer.encode_batch(texts)
        lengths = [len(enc.ids) for enc in encodings]
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        for start in range(0, len(order), BATCH):
            if should_stop is not None and should_stop():
                raise InterruptedError("embedding request abandoned")
            idx = order[start : start + BATCH]
            width = max(lengths[i] for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            out[idx] = mean_pool_normalize(hidden, mask)
        return out, sum(lengths)

    def close(self) -> None:
        self._session = None
