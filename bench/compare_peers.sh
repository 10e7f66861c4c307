#!/usr/bin/env bash
# bench/compare_peers.sh — the example beside the text classifiers a practitioner would also try,
# on the example's own splits and texts: accuracy, macro-F1, training time, peak RSS.
#
#   bench/compare_peers.sh [--split random|temporal|both] [--threads T] [--peers LIST]
#                          [--data DIR] [--minidl BIN] [--build DIR] [--out DIR] [--install]
#
# The peers (--peers, comma-separated; default all, in this order):
#   minidl          examples/text_classifier, the default spec (bag of embeddings, 5 epochs)
#   pytorch         bench/torch_text_classifier.py, the same spec in PyTorch
#   libtorch        bench/libtorch_text_classifier.cpp, the same bag model in PyTorch's C++ API:
#                   the script's initialisation (checked: equal weight checksums), data order, Adam
#   fasttext        fastText supervised, -epoch 5 -dim 64 (the example's budget)
#   fasttext-ngrams fastText supervised, -epoch 25 -wordNgrams 2 -dim 64
#   sklearn         bench/sklearn_text_classifier.py: TF-IDF over 1-2-grams + logistic regression
# 1. bench/peers_text_classifier.py export writes the example's split (the PyTorch script's
#    corpus, Subject + body, tokens and vocabulary, imported, not copied) to --out/data-SPLIT:
#    fastText-format token lines for fastText and scikit-learn, vocabulary ids for libtorch.
# 2. Each peer runs under /usr/bin/time -v (peak RSS from the outside; fastText: the larger of
#    its train and predict processes), with T threads (default 2) wherever it takes a count
#    (fastText -thread, torch's set_num_threads, minidl --threads; scikit-learn's lbfgs is
#    single-threaded, OMP/OpenBLAS capped at T anyway). "train s" is each one's own training
#    time: the training loop (minidl, PyTorch, libtorch), vectoriser + fit (scikit-learn), the
#    whole `fasttext supervised` process (it reads its input and saves its model inside);
#    "wall s" is every process of the peer from start to exit (start-up, data, training, test).
# 3. The fastText and scikit-learn predictions are scored by peers_text_classifier.py score (the
#    script's macro_f1); minidl and the PyTorch script score themselves; libtorch's predictions
#    go through the same scorer. The table goes to stdout and --out (default out/peers):
#    table.md, records.jsonl, machine.txt; the libtorch program is built with g++ into --build
#    (default build-peers) when missing or older than its source. Nothing here is built or run
#    by CMake or CTest.
#
# Needs: Debian's python3-torch (scripts/setup.sh with MINIDL_SETUP_EXTRA=python3-torch) and the
# peers, which the default setup does not install: MINIDL_SETUP_EXTRA=peers scripts/setup.sh, or
# --install here (fasttext, python3-sklearn, libtorch-dev); minidl's text_classifier, built
# (default: build/examples/text_classifier of this checkout; --minidl or MINIDL_TEXT_CLASSIFIER);
# the corpus (scripts/fetch_data.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SPLITS=random
THREADS=2
PEERS="minidl,pytorch,libtorch,fasttext,fasttext-ngrams,sklearn"
DATA=.cache/datasets/spam-assassin/data
MINIDL="${MINIDL_TEXT_CLASSIFIER:-build/examples/text_classifier}"
BUILD=build-peers
OUT=out/peers
INSTALL=0
PY=${PYTHON:-/usr/bin/python3}
LIBTORCH_INCLUDE=/usr/include/torch/csrc/api/include

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "compare_peers.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --split) SPLITS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --peers) PEERS="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --minidl) MINIDL="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --install) INSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_peers.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$SPLITS" in
  random|temporal) ;;
  both) SPLITS="random temporal" ;;
  *) die "--split must be random, temporal or both, not $SPLITS" ;;
esac
IFS=',' read -ra PEER_LIST <<<"$PEERS"
wants() { [[ ",$PEERS," == *",$1,"* ]]; }
for p in "${PEER_LIST[@]}"; do
  case "$p" in
    minidl|pytorch|libtorch|fasttext|fasttext-ngrams|sklearn) ;;
    *) die "unknown peer $p (minidl, pytorch, libtorch, fasttext, fasttext-ngrams, sklearn)" ;;
  esac
done

# ---- what is needed, and where it comes from -------------------------------------------------
if [[ $INSTALL == 1 ]]; then
  MINIDL_SETUP_EXTRA="peers python3-torch" scripts/setup.sh
fi
HOW="MINIDL_SETUP_EXTRA=peers scripts/setup.sh (or bench/compare_peers.sh --install)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not installed: apt-get install -y time"
"$PY" -c "import torch" 2>/dev/null ||
  die "$PY cannot import torch (the export and the scorer use the PyTorch script):" \
      "MINIDL_SETUP_EXTRA=python3-torch scripts/setup.sh"
if wants fasttext || wants fasttext-ngrams; then
  command -v fasttext >/dev/null || die "fasttext not installed: $HOW"
fi
if wants sklearn; then
  "$PY" -c "import sklearn" 2>/dev/null || die "python3-sklearn not installed ($PY): $HOW"
fi
if wants libtorch; then
  [[ -f $LIBTORCH_INCLUDE/torch/torch.h ]] || die "libtorch-dev not installed: $HOW"
  command -v g++ >/dev/null || die "g++ not installed: scripts/setup.sh"
fi
if wants minidl; then
  [[ -d $MINIDL ]] && MINIDL="$MINIDL/text_classifier"
  [[ -f $MINIDL && -x $MINIDL ]] ||
    die "no minidl text_classifier at $MINIDL: build it (cmake --build build --target" \
        "text_classifier) or pass --minidl BIN"
fi
[[ -d $DATA ]] || die "no corpus at $DATA (scripts/fetch_data.sh, or --data DIR)"

mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RECORDS="$OUT/records.jsonl"
: >"$RECORDS"

# ---- the libtorch program: built here, never by CMake ----------------------------------------
LIBTORCH_BIN="$BUILD/libtorch_text_classifier"
LIBTORCH_SRC=bench/libtorch_text_classifier.cpp
if wants libtorch; then
  if [[ ! -x $LIBTORCH_BIN || $LIBTORCH_SRC -nt $LIBTORCH_BIN ]]; then
    echo "== building $LIBTORCH_BIN (g++, libtorch)" >&2
    mkdir -p "$BUILD"
    g++ -std=c++17 -O2 -I"$LIBTORCH_INCLUDE" "$LIBTORCH_SRC" -ltorch -ltorch_cpu -lc10 \
      -o "$LIBTORCH_BIN" || die "building $LIBTORCH_BIN failed"
  fi
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "minidl: $MINIDL"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__)')"
  if wants sklearn; then echo "scikit-learn: $("$PY" -c 'import sklearn; print(sklearn.__version__)')"; fi
  if wants fasttext || wants fasttext-ngrams; then
    echo "fasttext: $(dpkg-query -W -f='${Version}' fasttext 2>/dev/null || echo unknown)"
  fi
  if wants libtorch; then
    echo "libtorch: $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo unknown)"
  fi
  echo "command: bench/compare_peers.sh --split ${SPLITS// /,} --threads $THREADS --peers $PEERS"
} >"$OUT/machine.txt"
sed 's/^/  /' "$OUT/machine.txt" >&2

# timed NAME CMD... : runs CMD under /usr/bin/time -v, stdout to $TMP/NAME.out; sets WALL (s)
# and RSS_MB for it.
timed() {
  local name="$1"
  shift
  local t0 t1
  t0="$(date +%s.%N)"
  /usr/bin/time -v -o "$TMP/$name.time" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || {
    tail -20 "$TMP/$name.err" >&2
    die "$name failed: $*"
  }
  t1="$(date +%s.%N)"
  WALL="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  RSS_MB="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/$name.time" |
    awk '{ printf "%.1f", $1 / 1024 }')"
}

# record PEER SPLIT TRAIN_S WALL_S RSS_MB SCORES_JSON NOTE : one line of records.jsonl
record() {
  "$PY" - "$@" >>"$RECORDS" <<'EOF'
import json, sys
peer, split, train_s, wall_s, rss_mb, scores, note = sys.argv[1:]
lines = [l for l in open(scores) if l.strip().startswith("{")]
s = json.loads(lines[-1])
print(json.dumps({"peer": peer, "split": split, "test_accuracy": s["test_accuracy"],
                  "test_macro_f1": s["test_macro_f1"], "train_s": float(train_s),
                  "wall_s": float(wall_s), "peak_rss_mb": float(rss_mb), "note": note}))
print(f"  {peer} ({split}): accuracy {s['test_accuracy']:.4f}, train {float(train_s):.2f} s, "
      f"wall {float(wall_s):.2f} s, peak RSS {float(rss_mb):.0f} MB", file=sys.stderr)
EOF
}
size_mb() { stat -c %s "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }
json_field() { "$PY" -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])' "$1" "$2"; }

for split in $SPLITS; do
  D="$OUT/data-$split"
  echo "== $split split: exporting the example's texts and ids to $D" >&2
  "$PY" bench/peers_text_classifier.py export --data "$DATA" --split "$split" --out "$D" >&2

  if wants minidl; then
    timed minidl "$MINIDL" --split "$split" --threads "$THREADS" --json --quiet --data "$DATA" \
      --out "$TMP/minidl_run"
    record "minidl" "$split" "$(json_field "$TMP/minidl.out" train_s)" "$WALL" "$RSS_MB" \
      "$TMP/minidl.out" "model.safetensors $(size_mb "$TMP/minidl_run/model.safetensors") MB"
  fi

  if wants pytorch; then
    timed pytorch "$PY" bench/torch_text_classifier.py --split "$split" --threads "$THREADS" \
      --data "$DATA" --json
    record "PyTorch (same bag)" "$split" "$(json_field "$TMP/pytorch.out" train_s)" "$WALL" \
      "$RSS_MB" "$TMP/pytorch.out" "torch $(json_field "$TMP/pytorch.out" framework | cut -d' ' -f2)"
  fi

  if wants libtorch; then
    V="$(json_field "$D/info.json" vocab)"
    "$PY" bench/peers_text_classifier.py init-checksum --vocab "$V" --threads "$THREADS" \
      >"$TMP/init_py.txt"
    "$LIBTORCH_BIN" --init-checksum --vocab "$V" --threads "$THREADS" >"$TMP/init_cc.txt"
    if cmp -s "$TMP/init_py.txt" "$TMP/init_cc.txt"; then
      note="initial weights = the script's"
    else
      echo "compare_peers.sh: libtorch's initial weights differ from the script's:" >&2
      paste "$TMP/init_py.txt" "$TMP/init_cc.txt" >&2
      note="initial weights DIFFER from the script's"
    fi
    timed libtorch "$LIBTORCH_BIN" --train "$D/train.ids" --test "$D/test.ids" \
      --threads "$THREADS" --pred "$TMP/libtorch.pred" --json
    "$PY" bench/peers_text_classifier.py score --gold "$D/test.txt" --pred "$TMP/libtorch.pred" \
      >"$TMP/libtorch.score"
    record "libtorch (same bag)" "$split" "$(json_field "$TMP/libtorch.out" train_s)" "$WALL" \
      "$RSS_MB" "$TMP/libtorch.score" "$note"
  fi

  # fastText: train, then predict; train s = the supervised process, RSS = the larger of the two.
  for variant in fasttext fasttext-ngrams; do
    wants "$variant" || continue
    if [[ $variant == fasttext ]]; then
      flags=(-epoch 5 -dim 64)
    else
      flags=(-epoch 25 -wordNgrams 2 -dim 64)
    fi
    timed "$variant-train" fasttext supervised -input "$D/train.txt" -output "$TMP/$variant" \
      "${flags[@]}" -thread "$THREADS" -verbose 1
    train_wall="$WALL" train_rss="$RSS_MB"
    timed "$variant-predict" fasttext predict "$TMP/$variant.bin" "$D/test.txt"
    cp "$TMP/$variant-predict.out" "$TMP/$variant.pred"
    "$PY" bench/peers_text_classifier.py score --gold "$D/test.txt" --pred "$TMP/$variant.pred" \
      >"$TMP/$variant.score"
    wall="$(awk -v a="$train_wall" -v b="$WALL" 'BEGIN { printf "%.3f", a + b }')"
    rss="$(awk -v a="$train_rss" -v b="$RSS_MB" 'BEGIN { print (a > b ? a : b) }')"
    record "fastText ${flags[*]}" "$split" "$train_wall" "$wall" "$rss" "$TMP/$variant.score" \
      "model .bin $(size_mb "$TMP/$variant.bin") MB"
    rm -f "$TMP/$variant.bin" "$TMP/$variant.vec"
  done

  if wants sklearn; then
    OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" timed sklearn \
      "$PY" bench/sklearn_text_classifier.py --train "$D/train.txt" --test "$D/test.txt" \
      --pred "$TMP/sklearn.pred" --json
    "$PY" bench/peers_text_classifier.py score --gold "$D/test.txt" --pred "$TMP/sklearn.pred" \
      >"$TMP/sklearn.score"
    record "TF-IDF 1-2-grams + LogReg" "$split" "$(json_field "$TMP/sklearn.out" train_s)" \
      "$WALL" "$RSS_MB" "$TMP/sklearn.score" \
      "$(json_field "$TMP/sklearn.out" features) features, $(json_field "$TMP/sklearn.out" iterations) lbfgs iterations"
  fi
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$PY" bench/peers_text_classifier.py table --records "$RECORDS" --markdown >"$OUT/table.md"
echo
"$PY" bench/peers_text_classifier.py table --records "$RECORDS"
echo "(records: $RECORDS, table: $OUT/table.md, machine: $OUT/machine.txt)"
