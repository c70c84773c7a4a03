"""Lexical item vectors from the items' own text, for the fusion model's ``item_vectors`` input (issue 18:
text that pays on warm items).

The language-model view (MiniLM) reads meaning; a title's exact tokens -- model numbers, grit sizes, pack
counts, brand spellings -- are what a bag of word and character n-grams keeps. This script renders each
item's text with the model's default template (the text MiniLM sees), builds TF-IDF over word 1-2 grams and
character 3-5 grams (sublinear tf, terms in at least 2 items), reduces it with a truncated SVD and writes
L2-normalised rows as an ``.npz`` with ``ids`` and ``vectors``:

    python benchmarks/lexical_vectors.py --dataset amazon-scientific --dim 256 \\
        --out runs/lexical/amazon-scientific-256.npz
    python benchmarks/lexical_vectors.py --mapping my-data.toml --out runs/lexical/mine.npz   # your data
    python benchmarks/run.py --dataset amazon-scientific --model fusion ... \\
        --set item_vectors=runs/lexical/amazon-scientific-256.npz

The fusion model computes the same vectors itself with ``--set lexical_dim=256`` (and gives items added at
serving time theirs); this script writes them to a file, for other models or to inspect them.

Unsupervised on the catalogue's text only (no interaction, no split is read), so the vectors carry no
information from the validation or test targets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def lexical_vectors(texts: list[str], dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) L2-normalised truncated-SVD rows of word (1-2) + char_wb (3-5) n-gram TF-IDF: the library's
    ``ctxrec.text.lexical.LexicalEncoder``, which the fusion model's ``lexical_dim`` also uses."""
    from ctxrec.text.lexical import LexicalEncoder

    enc = LexicalEncoder(dim)
    vecs = enc.fit_transform(texts, seed=seed)
    if enc.dim < dim:
        raise SystemExit(f"--dim {dim} must be below min(items, n-gram features) = {enc.dim + 1}")
    return vecs


def main(argv: list[str] | None = None) -> Path:
    from ctxrec.experiment import load_data
    from ctxrec.text.templates import item_texts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="a built-in dataset")
    ap.add_argument("--mapping", help="or a column mapping file of your own data (ctxrec data init writes one)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--out", type=Path, required=True, help="the .npz to write (ids, vectors)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    from ctxrec.errors import CtxrecError

    try:
        data = load_data(dataset=args.dataset, mapping=args.mapping, data_dir=args.data_dir)
    except CtxrecError as exc:  # a wrong name or mapping: the message, not a traceback
        raise SystemExit(f"error: {exc}") from None
    texts = item_texts(data)
    if not any(t.strip() for t in texts):
        raise SystemExit(f"{args.dataset or args.mapping} has no item text to build lexical vectors from: map an "
                         "items file with text fields (title, description, ...)")
    vecs = lexical_vectors(texts, args.dim)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, ids=np.array(data.item_vocab.ids, dtype=str), vectors=vecs)
    print(f"{args.dataset or args.mapping}: {len(texts)} items -> {vecs.shape[1]}-d lexical vectors in {args.out}")
    return args.out


if __name__ == "__main__":
    main()
