"""Cost of text encoding, and what the embedding cache saves: encode a dataset's item texts twice.

    python benchmarks/text_cache.py --dataset amazon-scientific

The first pass (an empty cache directory) runs the language model on every distinct text; the second
(a new process would do the same) reads every vector from disk and encodes nothing. Writes
benchmarks/results/<dataset>/text_cache.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    from ctxrec.data.datasets import load_dataset
    from ctxrec.experiment import machine_description, peak_rss_mib
    from ctxrec.text.cache import EmbeddingCache
    from ctxrec.text.encoders import TextEncoderConfig, build_encoder
    from ctxrec.text.templates import TextTemplateConfig, item_texts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)

    data = load_dataset(args.dataset, args.data_dir)
    texts = item_texts(data, TextTemplateConfig())
    t0 = time.perf_counter()
    encoder = build_encoder(TextEncoderConfig(model=args.model))
    load_s = time.perf_counter() - t0
    passes = []
    first: np.ndarray | None = None  # the first pass's vectors, which the warm pass must return unchanged
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("first run (empty cache)", "second run (warm cache)"):
            cache = EmbeddingCache(tmp)  # a fresh object each time: nothing is kept in memory between runs
            t0 = time.perf_counter()
            vecs = cache.encode_cached(encoder, texts, progress=False)
            secs = time.perf_counter() - t0
            st = cache.last_stats
            assert st is not None
            passes.append({"pass": label, "seconds": round(secs, 3), "texts": st.texts, "unique": st.unique,
                           "cache_hits": st.hits, "encoded": st.encoded, "texts_per_second": round(st.texts / secs, 1)})
            if first is None:
                first = vecs
            elif not np.array_equal(vecs, first):
                raise SystemExit("the warm cache returned other vectors than it stored")
    out = {"dataset": args.dataset, "encoder": args.model, "model_load_seconds": round(load_s, 2), "passes": passes,
           "mean_chars": round(float(np.mean([len(t) for t in texts])), 1), "peak_rss_mib": peak_rss_mib(),
           "machine": machine_description(),
           "command": "python benchmarks/text_cache.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))}
    dest = ROOT / "results" / args.dataset / "text_cache.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    for p in passes:
        print(f"{p['pass']}: {p['seconds']} s, encoded {p['encoded']} of {p['texts']} texts ({p['cache_hits']} cache hits)")
    return out


if __name__ == "__main__":
    main()
