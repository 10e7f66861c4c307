#!/usr/bin/env bash
# scripts/make_sample.sh — (re)makes the text classifier's offline sample,
# examples/text_classifier/sample/spam_sample.jsonl, from the full SpamAssassin corpus.
#
# The selection is textclf::select_sample (examples/text_classifier/corpus.cpp; described in
# examples/text_classifier/sample/README.md): deterministic, so rerunning it gives the same file,
# and `text_data_check` (a CTest test) fails if the committed file differs from it.
#   BUILD_DIR=dir   build folder to use (default: build-data)
#   DATA_DIR=dir    the corpus cache (default: .cache/datasets; fetched when absent)
set -euo pipefail
cd "$(dirname "$0")/.."

build="${BUILD_DIR:-build-data}"
FETCH_WORDNET=0 scripts/fetch_data.sh
cmake -S . -B "$build" -DMINIDL_CUDA=OFF -DMINIDL_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target text_data_check -j"$(nproc)"
"$build"/examples/text_data_check --make-sample examples/text_classifier/sample/spam_sample.jsonl \
    "${DATA_DIR:-.cache/datasets}"
