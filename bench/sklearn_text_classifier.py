#!/usr/bin/env python3
"""bench/sklearn_text_classifier.py — scikit-learn's TF-IDF over word 1-2-grams with logistic
regression, the linear baseline beside the example (bench/compare_peers.sh runs it).

  /usr/bin/python3 bench/sklearn_text_classifier.py --train DIR/train.txt --test DIR/test.txt \\
      --pred FILE [--json]

Input: the files bench/peers_text_classifier.py export writes ("__label__ham|spam tok tok ...",
the example's tokens of Subject + body on the example's split). The tokens are taken as they are
(token_pattern \\S+, no lowercasing: they are lowercased already); the vocabulary is TF-IDF's own
(every unigram and bigram of the training side, min_df 1), not the example's >= 2 rule.
Model: TfidfVectorizer(ngram_range=(1, 2)) (smooth idf, sublinear_tf off, l2 rows: the defaults)
-> LogisticRegression(C=1, lbfgs: the defaults; max_iter raised from 100 to 1000 only as a cap,
the random split's ~400k features converge in ~40 iterations, printed as "iterations").
Deterministic; lbfgs on a sparse matrix runs on one core. train_s is vectoriser fit + classifier fit; the predictions go to --pred as
"__label__ham|spam" lines, scored by peers_text_classifier.py score. Imports no torch, so the peak
RSS that compare_peers.sh measures around this process is scikit-learn's own.
"""
import argparse
import json
import resource
import sys
import time

T_START = time.perf_counter()
import sklearn  # noqa: E402  (import time is part of what is measured)
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

T_IMPORTED = time.perf_counter()
LABELS = ["__label__ham", "__label__spam"]


def read(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, _, text = line.rstrip("\n").partition(" ")
            labels.append(LABELS.index(label))
            texts.append(text)
    return texts, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--pred", required=True, help="write one predicted label a line here")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    t0 = time.perf_counter()
    tr_x, tr_y = read(a.train)
    te_x, _ = read(a.test)
    t_data = time.perf_counter() - t0

    t1 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False)
    features = vec.fit_transform(tr_x)
    clf = LogisticRegression(max_iter=1000)
    clf.fit(features, tr_y)
    t_train = time.perf_counter() - t1

    pred = clf.predict(vec.transform(te_x))
    with open(a.pred, "w") as f:
        for c in pred:
            f.write(LABELS[int(c)] + "\n")
    out = {"framework": "scikit-learn " + sklearn.__version__, "train_docs": len(tr_x),
           "test_docs": len(te_x), "features": len(vec.vocabulary_),
           "iterations": int(clf.n_iter_[0]), "import_s": T_IMPORTED - T_START, "data_s": t_data,
           "train_s": t_train,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    sys.exit(main())
