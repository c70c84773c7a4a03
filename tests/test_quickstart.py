"""``ctxrec quickstart`` as a user without ml-100k runs it: the seeded synthetic fallback, said so; the
four models with their defaults; the fusion model shown last; a run cut by the time budget said so."""

from __future__ import annotations

from pathlib import Path

from ctxrec.quickstart import QUICKSTART_MODELS, run_quickstart


def test_quickstart_falls_back_to_synthetic_data_and_shows_the_fusion_model(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    lines: list[str] = []
    results = run_quickstart(data_dir=str(empty), out=tmp_path / "runs", budget_seconds=3, echo=lines.append)
    text = "\n".join(lines)
    assert "SYNTHETIC" in text and "[synthetic data]" in text
    assert list(results) == ["popularity", "ease", "sasrec", "fusion"] == [k for k, _ in QUICKSTART_MODELS]
    assert all(0 <= m["ndcg@10"] <= 1 for m in results.values())
    assert "example: top-5 fusion recommendations" in text
    assert "stopped by --budget-seconds 3" in text  # 3 s does not reach early stopping: said, not silent
    for kind in results:
        assert (tmp_path / "runs" / kind / "metrics.json").exists()
