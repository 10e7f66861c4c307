// examples/text_classifier/wordnet.h — the multi-class task: WordNet 3.0 noun glosses -> their
// lexicographer class (26 classes, noun.Tops ... noun.time).
//
// Spec (docs/text_classifier.md, data): data.noun from Debian's wordnet-base (scripts/fetch_data.sh
// puts it in .cache/datasets/wordnet-root/usr/share/wordnet/). Lines starting with two spaces are
// the licence and are skipped; every other line is one synset,
//   00006024 03 n 01 heterotroph 0 001 @ 00004475 n 0000 | an organism that depends on ...
// with the lexicographer file number in field 2. Text = everything after the first "| " (the
// definition and any quoted examples; trailing blanks removed). Class = lex file number - 3, so
// 0 = noun.Tops (03) ... 25 = noun.time (28), named as in lexnames(5WN). Split: within each class,
// in file order, the synset at 0-based position i is test when i % 5 == 4, train otherwise.
// data.noun of WordNet 3.0 holds 82,115 synsets: 51 in noun.Tops and 82,064 in the 25 others.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "examples/text_classifier/corpus.h"

namespace textclf {

// Class id c is lexicographer file c + 3.
inline constexpr std::array<std::string_view, 26> kNounClasses = {
    "noun.Tops",     "noun.act",        "noun.animal",        "noun.artifact",   "noun.attribute",
    "noun.body",     "noun.cognition",  "noun.communication", "noun.event",      "noun.feeling",
    "noun.food",     "noun.group",      "noun.location",      "noun.motive",     "noun.object",
    "noun.person",   "noun.phenomenon", "noun.plant",         "noun.possession", "noun.process",
    "noun.quantity", "noun.relation",   "noun.shape",         "noun.state",      "noun.substance",
    "noun.time"};

struct Synset {
    std::string offset;  // field 1, the synset's byte offset in data.noun (8 digits)
    int lex_file = 0;    // field 2, 3..28
    std::string gloss;   // after the first "| "
};

// One line of data.noun: nullopt for a licence line (two leading spaces) or a blank line;
// FormatError naming `name`:`line_no` for anything malformed (short fields, a lex file outside
// 03-28, a synset type other than n, no "| ").
std::optional<Synset> parse_wordnet_line(std::string_view line, const std::string& name,
                                         int64_t line_no);

// data.noun itself, or a folder holding it (directly, under usr/share/wordnet/, or under
// wordnet-root/usr/share/wordnet/ as the cache lays it out); nullopt when absent.
std::optional<std::string> find_wordnet_nouns(const std::string& path);

// All noun synsets in file order as a TextDataset (Plain text, classes = kNounClasses) + split.
LabeledData load_wordnet_nouns(const std::string& path);
LabeledData parse_wordnet_nouns(std::string_view contents, const std::string& name);

}  // namespace textclf
