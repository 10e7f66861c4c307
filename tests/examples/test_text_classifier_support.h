// tests/examples/test_text_classifier_support.h — what the text_classifier tests share: a
// temporary folder, the committed offline sample prepared once, and run options for it.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/run.h"

namespace textclf::test {

// A fresh folder under the system temp dir, removed with its contents at scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "textclf_XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string sub(const std::string& name) const { return (path / name).string(); }
};

inline DataConfig sample_config(SplitKind split = SplitKind::Random) {
    DataConfig d;
    d.data_dir = default_sample_path();
    d.split = split;
    d.keep_texts = true;  // the predict test classifies the raw test texts
    return d;
}

// The sample's random split, loaded and encoded once per process.
inline const PreparedData& sample_data() {
    static const PreparedData data = load_and_prepare(sample_config());
    return data;
}

// Options for a quick, quiet run on the sample: `epochs` epochs at lr 1e-2 (the sample is small).
inline RunOptions sample_run(const std::string& out_dir, int64_t epochs = 3) {
    RunOptions o;
    o.data = sample_config();
    o.train.epochs = epochs;
    o.train.lr = 1e-2;
    o.out_dir = out_dir;
    o.progress = false;
    return o;
}

}  // namespace textclf::test
