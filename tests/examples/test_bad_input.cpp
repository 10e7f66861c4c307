// tests/examples/test_bad_input.cpp — the text_classifier given bad input, end to end: empty
// files, a label outside the classes, invalid UTF-8 and NUL bytes, a 50 MB line, a vocabulary
// that does not match the model, --threads the system refuses, a checkpoint or model of another
// model, a truncated or bit-flipped file. Each gets a clear error naming the file (or flag, or
// tensor) or a documented result, and no output file is left half-written or out of step with
// the others.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "examples/text_classifier/checkpoint.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/run.h"
#include "tests/examples/test_text_classifier_support.h"

using namespace textclf;
using namespace textclf::test;
namespace fs = std::filesystem;

namespace {

// A small two-class data set: "good ..." is pos, "bad ..." is neg.
std::string user_rows(int n, int offset = 0) {
    std::string out;
    for (int i = offset; i < offset + n; ++i) {
        const bool pos = i % 2 == 0;
        out += pos ? "pos\tgood fine great film " : "neg\tbad awful dull film ";
        out += 'w';
        out += std::to_string(i % 7);
        out += '\n';
    }
    return out;
}

std::string write(const TempDir& dir, const std::string& name, const std::string& contents) {
    const std::string path = dir.sub(name);
    write_file_atomic(path, contents);
    return path;
}

// A quick run on the user's files: 1 epoch of a small model.
RunOptions user_run(const std::string& train, const std::string& test, const std::string& out) {
    RunOptions o;
    o.data.train_file = train;
    o.data.test_file = test;
    o.train.epochs = 1;
    o.train.dim = 8;
    o.train.hidden = 8;
    o.train.batch = 8;
    o.out_dir = out;
    o.progress = false;
    return o;
}

// The names of the files in `dir` (empty when it does not exist).
std::set<std::string> files_in(const std::string& dir) {
    std::set<std::string> out;
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir))
        out.insert(e.path().filename().string());
    return out;
}

// Every file of `dir`, name -> bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
    std::map<std::string, std::string> out;
    for (const std::string& f : files_in(dir))
        out[f] = read_file((fs::path(dir) / f).string());
    return out;
}

const std::set<std::string> kRunOutputs = {"checkpoint.safetensors", "model.safetensors",
                                           "run.json", "vocab.txt"};

// A trained model folder (out) from user data written into `dir`.
struct TrainedModel {
    TempDir dir;
    std::string train, test, out;
    TrainedModel() {
        train = write(dir, "train.tsv", user_rows(48));
        test = write(dir, "test.tsv", user_rows(12, 1));
        out = dir.sub("model");
        run_training(user_run(train, test, out));
    }
};

void flip_bit(const std::string& path, int64_t from_end) {
    std::string bytes = read_file(path);
    bytes[bytes.size() - static_cast<size_t>(from_end)] ^= 0x10;
    write_file_atomic(path, bytes);
}

void truncate_by(const std::string& path, size_t n) {
    std::string bytes = read_file(path);
    bytes.resize(bytes.size() - n);
    write_file_atomic(path, bytes);
}

}  // namespace

TEST_CASE("examples/bad input: empty data files are refused with their path, before any output") {
    TempDir dir;
    const std::string train = write(dir, "train.tsv", user_rows(16));
    const std::string test = write(dir, "test.jsonl",
                                   R"({"label":"pos","text":"good"})"
                                   "\n");
    const std::string empty_tsv = write(dir, "empty.tsv", "");
    const std::string empty_jsonl = write(dir, "empty.jsonl", "");
    const std::string out = dir.sub("out");
    CHECK_THROWS_WITH_AS(run_training(user_run(empty_tsv, test, out)),
                         doctest::Contains("empty.tsv: no rows"), minidl::FormatError);
    CHECK_THROWS_WITH_AS(run_training(user_run(train, empty_jsonl, out)),
                         doctest::Contains("empty.jsonl: no rows"), minidl::FormatError);
    // Only a header, or only blank lines, is empty too.
    const std::string header_only = write(dir, "header.tsv", "label\ttext\n\n\n");
    CHECK_THROWS_WITH_AS(run_training(user_run(header_only, test, out)),
                         doctest::Contains("header.tsv: no rows"), minidl::FormatError);
    CHECK_FALSE(fs::exists(out));
}

TEST_CASE("examples/bad input: empty model files are refused with their path") {
    TrainedModel m;
    const std::string broken = m.dir.sub("broken");
    auto with_empty = [&](const char* file) {
        fs::remove_all(broken);
        fs::copy(m.out, broken);
        write_file_atomic((fs::path(broken) / file).string(), "");
    };
    with_empty("vocab.txt");
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains("vocab.txt: must start with"),
                         minidl::FormatError);
    with_empty("model.safetensors");
    CHECK_THROWS_WITH_AS(Predictor{broken},
                         doctest::Contains("model.safetensors: file has 0 bytes"),
                         minidl::FormatError);
    with_empty("run.json");
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains("run.json"), minidl::FormatError);
    with_empty("checkpoint.safetensors");
    RunOptions resume = user_run(m.train, m.test, m.dir.sub("resumed"));
    resume.resume_dir = broken;
    CHECK_THROWS_WITH_AS(run_training(resume),
                         doctest::Contains("checkpoint.safetensors: file has 0 bytes"),
                         minidl::FormatError);
    RunOptions init = user_run(m.train, m.test, m.dir.sub("init"));
    init.init_from = write(m.dir, "empty.safetensors", "");
    CHECK_THROWS_WITH_AS(run_training(init), doctest::Contains("empty.safetensors: file has 0"),
                         minidl::FormatError);
    CHECK(files_in(m.dir.sub("resumed")).empty());
    CHECK(files_in(m.dir.sub("init")).empty());

    SUBCASE("an empty document is classified as the empty bag (<pad>), like whitespace") {
        const Predictor p(m.out);
        const auto empty = p.predict(std::string());
        const auto blank = p.predict(std::string(" \t\n"));
        CHECK(empty.logits == blank.logits);
        CHECK(empty.probabilities.size() == 2);
        CHECK(p.predict(std::vector<std::string>{}).empty());
    }
}

TEST_CASE("examples/bad input: a label outside the training classes names file and line") {
    TempDir dir;
    const std::string train = write(dir, "train.tsv", user_rows(16));
    const std::string out = dir.sub("out");
    const std::string test = write(dir, "test.tsv", "pos\tgood\nneg\tbad\neggs\tspam and eggs\n");
    CHECK_THROWS_WITH_AS(run_training(user_run(train, test, out)),
                         doctest::Contains("test.tsv:3: label \"eggs\" does not occur in the "
                                           "training file"),
                         minidl::FormatError);
    // Labels become JSON strings (run.json, the checkpoint): invalid UTF-8 is refused at its line.
    const std::string bad_label = write(dir, "bad_label.tsv", user_rows(3) + "p\xC3\x28s\tx\n");
    const std::string good_test = write(dir, "good_test.tsv", user_rows(4));
    CHECK_THROWS_WITH_AS(run_training(user_run(bad_label, good_test, out)),
                         doctest::Contains("bad_label.tsv:4: the label is not valid UTF-8"),
                         minidl::FormatError);
    CHECK_FALSE(fs::exists(out));
}

TEST_CASE("examples/bad input: invalid UTF-8 and NUL bytes in texts are separators, no error") {
    TempDir dir;
    // Lone continuation byte, truncated sequence, 0xFF/0xFE, overlong form, NUL bytes.
    const std::string odd = std::string(
                                "pos\tgood\x80"
                                "fine\xC3 great\xFF\xFE"
                                "film\xC0\xAF") +
                            std::string("w1\0w2\n", 6) + std::string("neg\t\0bad\0\0awful\n", 16);
    const std::string train = write(dir, "train.tsv", user_rows(16) + odd + user_rows(4));
    const std::string test = write(dir, "test.tsv", odd + user_rows(4, 1));
    const RunResult r = run_training(user_run(train, test, dir.sub("out")));
    CHECK(r.summary["train_docs"] == 22);
    CHECK(r.summary["test_docs"] == 6);
    const Predictor p(dir.sub("out"));
    const std::string text(
        "good\x80"
        "fine\xC3 great\xFF\xFE"
        "film\0bad",
        26);
    // The same tokens, hence the same logits, as the text with spaces for the odd bytes.
    CHECK(p.predict(text).logits == p.predict(std::string("good fine great film bad")).logits);
    // JSONL holds JSON strings: raw invalid UTF-8 is not JSON and is refused at its line, while
    // an escaped NUL is a character of the text.
    const std::string line1 = R"({"label":"pos","text":"good\u0000film"})";
    const std::vector<LabeledRow> rows = parse_jsonl(line1 + "\n", "d.jsonl");
    CHECK(rows.at(0).text == std::string("good\0film", 9));
    CHECK_THROWS_WITH_AS(
        parse_jsonl(line1 + "\n{\"label\":\"pos\",\"text\":\"\xFF\"}\n", "d.jsonl"),
        doctest::Contains("d.jsonl:2"), minidl::FormatError);
}

TEST_CASE("examples/bad input: a 50 MB line is read, tokenized, trained on and predicted") {
    // One line of 50 MB: a single 40 MB token first (the tokenizer must scan all of it to find
    // its end), then 10 MB of short words of which only the first 512 tokens count.
    constexpr size_t kTokenBytes = 40u << 20, kWordBytes = 10u << 20;
    std::string line = "pos\t";
    line.reserve(4 + kTokenBytes + kWordBytes + 1);
    line.append(kTokenBytes, 'z');
    while (line.size() < 4 + kTokenBytes + kWordBytes)
        line += " good";
    line += "\n";
    REQUIRE(line.size() > 50'000'000);
    TempDir dir;
    // Written without write_file_atomic's fsync: flushing 50 MB to disk is not what is tested.
    const std::string train = dir.sub("train.tsv");
    std::ofstream(train, std::ios::binary) << user_rows(16) << line << user_rows(4);
    line.clear();
    line.shrink_to_fit();
    const std::string test = write(dir, "test.tsv", user_rows(6, 1));
    const RunResult r = run_training(user_run(train, test, dir.sub("out")));
    CHECK(r.summary["train_docs"] == 21);
    // The 40 MB token occurs once: below the vocabulary's minimum count, so it is not kept.
    CHECK(r.summary["vocab"].get<int64_t>() < 30);
    const Predictor p(dir.sub("out"));
    const std::string doc = read_file(train);
    CHECK(p.predict(doc).probabilities.size() == 2);
    // The same line as JSONL.
    std::string jsonl = R"({"label":"pos","text":")";
    jsonl.append(kTokenBytes, 'z');
    jsonl += "\"}\n";
    const std::vector<LabeledRow> rows = parse_jsonl(jsonl, "big.jsonl");
    CHECK(rows.at(0).text.size() == kTokenBytes);
}

TEST_CASE(
    "examples/bad input: predict refuses a vocab.txt or run.json that does not match the model") {
    TrainedModel m;
    const Predictor good(m.out);
    const int64_t V = good.vocab().size();
    const std::string broken = m.dir.sub("broken");
    fs::copy(m.out, broken);
    const std::string vocab = (fs::path(broken) / "vocab.txt").string();
    std::string text = read_file(vocab);
    text.erase(text.rfind('\n', text.size() - 2) + 1);  // drop the last token
    write_file_atomic(vocab, text);
    const std::string want = "model.safetensors has vocabulary " + std::to_string(V) +
                             " and 2 classes, but vocab.txt has " + std::to_string(V - 1) +
                             " entries";
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains(want.c_str()), minidl::FormatError);
    fs::copy_file(fs::path(m.out) / "vocab.txt", vocab, fs::copy_options::overwrite_existing);
    const std::string run_json = (fs::path(broken) / "run.json").string();
    nlohmann::json record = nlohmann::json::parse(read_file(run_json));
    record["data"]["classes"] = {"neg", "other", "pos"};
    write_file_atomic(run_json, record.dump());
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains("and run.json 3 classes"),
                         minidl::FormatError);
}

TEST_CASE("examples/bad input: --threads below 0 or beyond what the system starts names the flag") {
    const int before = minidl::get_num_threads();
    CHECK_THROWS_WITH_AS(apply_threads_flag(-2),
                         doctest::Contains("--threads -2: must be at least 0"), minidl::ValueError);
    TempDir dir;
    const std::string train = write(dir, "train.tsv", user_rows(16));
    const std::string test = write(dir, "test.tsv", user_rows(4, 1));
    RunOptions o = user_run(train, test, dir.sub("out"));
    o.threads = before + 2;
    minidl::detail::refuse_thread_starts_after(0);  // the system refuses the first new thread
    const std::string flag = "--threads " + std::to_string(o.threads) +
                             ": set_num_threads: cannot start " + std::to_string(o.threads);
    CHECK_THROWS_WITH_AS(run_training(o), doctest::Contains(flag.c_str()), minidl::ValueError);
    minidl::detail::refuse_thread_starts_after(-1);
    CHECK(minidl::get_num_threads() == before);
    CHECK_FALSE(fs::exists(dir.sub("out")));
    o.threads = -1;
    CHECK_THROWS_AS(run_training(o), minidl::ValueError);
}

TEST_CASE(
    "examples/bad input: weights or a checkpoint of another model name the differing tensor") {
    TrainedModel m;
    const std::string model = (fs::path(m.out) / "model.safetensors").string();
    const int64_t V = Predictor(m.out).vocab().size();
    SUBCASE("--init-from a model of another width") {
        RunOptions o = user_run(m.train, m.test, m.dir.sub("wide"));
        o.train.dim = 16;
        o.init_from = model;
        const std::string want = "size mismatch for 'embedding.weight': checkpoint [" +
                                 std::to_string(V) + ", 8], module [" + std::to_string(V) + ", 16]";
        CHECK_THROWS_WITH_AS(run_training(o), doctest::Contains(want.c_str()), minidl::Error);
        CHECK(files_in(m.dir.sub("wide")).empty());
    }
    const std::string ckpt_dir = m.dir.sub("ckpt");
    fs::create_directories(ckpt_dir);
    const std::string ckpt = (fs::path(ckpt_dir) / kCheckpointFile).string();
    fs::copy_file(fs::path(m.out) / kCheckpointFile, ckpt);
    RunOptions resume = user_run(m.train, m.test, m.dir.sub("resumed"));
    resume.resume_dir = ckpt_dir;
    minidl::StateDict sd = minidl::load_safetensors(ckpt);
    SUBCASE("a tensor of another shape") {
        sd.tensors["model.fc1.weight"] = minidl::Tensor::zeros({8, 9});
        minidl::save_safetensors(ckpt, sd);
        CHECK_THROWS_WITH_AS(run_training(resume),
                             doctest::Contains("size mismatch for 'fc1.weight': checkpoint [8, 9], "
                                               "module [8, 8]"),
                             minidl::Error);
    }
    SUBCASE("a tensor of another dtype") {
        sd.tensors["model.fc2.bias"] = minidl::Tensor::zeros({2}, minidl::DType::I64);
        minidl::save_safetensors(ckpt, sd);
        CHECK_THROWS_WITH_AS(run_training(resume),
                             doctest::Contains("dtype mismatch for 'fc2.bias': checkpoint i64"),
                             minidl::Error);
    }
    SUBCASE("another configuration: the first differing setting") {
        nlohmann::json config = nlohmann::json::parse(sd.metadata.at("config"));
        const Checkpoint c = load_checkpoint(ckpt);
        TrainConfig other = c.config;
        other.lr = 0.5;
        const PreparedData data = load_and_prepare(resume.data);
        Trainer t(other, data);
        const std::string want = "lr is " + config["lr"].dump() + " in the checkpoint and 0.5";
        CHECK_THROWS_WITH_AS(t.load_state_dict(c.state), doctest::Contains(want.c_str()),
                             minidl::StateError);
    }
    SUBCASE("another format version") {
        sd.metadata["version"] = "2";
        minidl::save_safetensors(ckpt, sd);
        CHECK_THROWS_WITH_AS(run_training(resume), doctest::Contains("version 2 is not supported"),
                             minidl::FormatError);
    }
    CHECK(files_in(m.dir.sub("resumed")).empty());
}

TEST_CASE("examples/bad input: a truncated or bit-flipped model or checkpoint is not loaded") {
    TrainedModel m;
    const std::string broken = m.dir.sub("broken");
    const std::string model = (fs::path(broken) / "model.safetensors").string();
    const std::string ckpt = (fs::path(broken) / kCheckpointFile).string();
    auto fresh_copy = [&] {
        fs::remove_all(broken);
        fs::copy(m.out, broken);
    };
    RunOptions resume = user_run(m.train, m.test, m.dir.sub("resumed"));
    resume.resume_dir = broken;

    fresh_copy();
    flip_bit(model, 3);  // inside fc2.weight, the last tensor of the data buffer
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains("the data fails its checksum"),
                         minidl::FormatError);
    fresh_copy();
    truncate_by(model, 1);
    CHECK_THROWS_WITH_AS(Predictor{broken}, doctest::Contains("model.safetensors"),
                         minidl::FormatError);
    fresh_copy();
    flip_bit(ckpt, 100);
    CHECK_THROWS_WITH_AS(run_training(resume), doctest::Contains("the data fails its checksum"),
                         minidl::FormatError);
    CHECK_THROWS_AS(load_checkpoint(ckpt), minidl::FormatError);
    fresh_copy();
    truncate_by(ckpt, read_file(ckpt).size() / 2);
    CHECK_THROWS_AS(run_training(resume), minidl::FormatError);
    CHECK(files_in(m.dir.sub("resumed")).empty());
}

TEST_CASE("examples/bad input: a failed run leaves earlier outputs as they were, no temp file") {
    TrainedModel m;
    CHECK(files_in(m.out) == kRunOutputs);  // nothing else, no *.tmp.* left behind
    const auto before = snapshot(m.out);
    // A second run into the same folder, on data with a larger vocabulary, starting from the
    // first run's weights: it fails after creating the folder (the embedding has another size),
    // and must not have replaced vocab.txt (or anything else) by then.
    const std::string more = write(
        m.dir, "more.tsv", user_rows(48) + user_rows(4) + "pos\tnovel words\nneg\tnovel words\n");
    RunOptions o = user_run(more, m.test, m.out);
    o.init_from = (fs::path(m.out) / "model.safetensors").string();
    CHECK_THROWS_WITH_AS(run_training(o), doctest::Contains("size mismatch for 'embedding.weight'"),
                         minidl::Error);
    CHECK(snapshot(m.out) == before);
}

TEST_CASE("examples/bad input: only temporary files of writers no longer running are removed") {
    TempDir dir;
    // pid_max is at most 2^22, so pid 999999999 never runs; this process does.
    const std::string self = std::to_string(::getpid());
    const std::vector<std::string> dead = {"checkpoint.safetensors.tmp.999999999.0",
                                           "vocab.txt.tmp.999999998.17"};
    const std::vector<std::string> kept = {
        "checkpoint.safetensors.tmp." + self + ".3",  // a live writer's
        "model.safetensors",                          // a finished file
        ".tmp.999999999.0",                           // no target name
        "x.tmp.99999999x.0",                          // pid not a number
        "x.tmp.999999999.",                           // no counter
        "x.tmp.1234567890.0",                         // pid longer than any pid
        "x.tmpl.999999999.0",                         // not ".tmp."
        "x.tmp.999999999"};                           // no counter field
    for (const std::string& f : dead) write(dir, f, "partial");
    for (const std::string& f : kept) write(dir, f, "keep");
    CHECK(remove_abandoned_temp_files(dir.path.string()) == static_cast<int>(dead.size()));
    CHECK(files_in(dir.path.string()) == std::set<std::string>(kept.begin(), kept.end()));
}

#ifdef TEXTCLF_BINARY
namespace {

// Runs the program with `args`, stdout and stderr to files; returns its pid.
pid_t spawn_program(const std::vector<std::string>& args, const std::string& out,
                    const std::string& err) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(o, 1);
        ::dup2(e, 2);
        std::vector<char*> argv{const_cast<char*>(TEXTCLF_BINARY)};
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(TEXTCLF_BINARY, argv.data());
        ::_exit(127);
    }
    return pid;
}

int exit_status(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("examples/bad input: the program's exit status and message for bad input") {
    TrainedModel m;
    const std::string out = m.dir.sub("stdout"), err = m.dir.sub("stderr");
    auto run = [&](const std::vector<std::string>& args) {
        return exit_status(spawn_program(args, out, err));
    };
    // A bad command line: exit status 2, the flag named.
    CHECK(run({"--threads", "-1", "--train", m.train, "--test", m.test}) == 2);
    CHECK(read_file(err).find("--threads") != std::string::npos);
    // Bad data: exit status 1, the file named, no output folder.
    const std::string empty = write(m.dir, "empty.tsv", "");
    CHECK(run({"--train", empty, "--test", m.test, "--out", m.dir.sub("o"), "--quiet"}) == 1);
    CHECK(read_file(err).find("empty.tsv: no rows") != std::string::npos);
    CHECK_FALSE(fs::exists(m.dir.sub("o")));
    // predict on an empty file: one document (the empty one); with --lines: none.
    CHECK(run({"predict", "--model", m.out, empty}) == 0);
    const std::string printed = read_file(out);
    CHECK(std::count(printed.begin(), printed.end(), '\n') == 1);
    CHECK(run({"predict", "--model", m.out, "--lines", empty}) == 0);
    CHECK(read_file(out).empty());
}

TEST_CASE("examples/bad input: a run killed at any moment leaves a loadable checkpoint") {
    TempDir dir;
    const std::string sample = default_sample_path();
    for (int delay_ms : {0, 7, 23}) {
        CAPTURE(delay_ms);
        const std::string out = dir.sub("run" + std::to_string(delay_ms));
        const pid_t pid = spawn_program({"--data", sample, "--out", out, "--quiet", "--epochs",
                                         "100000", "--threads", "1", "--dim", "8", "--hidden", "8"},
                                        dir.sub("stdout"), dir.sub("stderr"));
        const fs::path ckpt = fs::path(out) / kCheckpointFile;
        for (int i = 0; i < 400 && !fs::exists(ckpt); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        ::kill(pid, SIGKILL);  // no handler runs: whatever is on disk now is what a crash leaves
        CHECK(exit_status(pid) == 128 + SIGKILL);
        const Checkpoint c = load_checkpoint(ckpt.string());  // complete, checksum verified
        CHECK(c.config.epochs == 100000);
        // Only whole files under their final names; an interrupted write leaves at most its
        // temporary file (checkpoint.safetensors.tmp.<pid>.<n>).
        for (const std::string& f : files_in(out))
            CHECK(
                (f == kCheckpointFile || f.rfind(std::string(kCheckpointFile) + ".tmp.", 0) == 0));
    }
}
#endif
