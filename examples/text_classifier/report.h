// examples/text_classifier/report.h — the compare subcommand: every trick on the same data over
// several seeds, and the robustness report it writes (report.md, report.html, compare.json).
//
// For each trick and seed s = seed0 .. seed0 + seeds - 1, one run per split on the same corpus
// (tokenized once; each split has its own vocabulary, as a single run would build it):
//   random split:   clean accuracy and macro-F1, the attack sweep, noisy text, flatness
//                   (robustness.h), training time per epoch
//   temporal split: accuracy under the temporal shift
// and the table reports mean ± sample standard deviation over the seeds (std shown with 2+ seeds).
// Time per epoch is reported relative to the baseline's mean on the same split (1.00 = as fast
// as the baseline; the machine is shared, so read it as a rough factor). The tricks and their
// settings:
//   baseline  Adam, nothing else
//   fgm       --fgm 1                       (the seed's epsilon)
//   pgd       --pgd                         (epsilon 1, alpha 0.3, K = 3)
//   freelb    --freelb                      (K = 2, adv_lr 0.1, init_mag 0.6)
//   awp       --awp                         (adv_lr 1, adv_eps 0.01)
//   ema       --ema 0.999 --ema-warmup      (the seed's decay; warm-up per tricks/ema.h)
//   swa       --swa-start max(1, E - 2)     (average of the last 3 epochs' ends, lr held)
//   amp       --amp f16                     (autocast F16 + GradScaler, the seed's AMP)
//   accum     --accum 4                     (4 micro-batches of 8 = the same batch of 32)
// Every run's record goes to <out>/runs/<trick>-<split>-s<seed>/run.json.
#pragma once

#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/robustness.h"
#include "examples/text_classifier/run.h"
#include "examples/text_classifier/train.h"

namespace textclf {

struct TrickSpec {
    std::string name;
    std::string flags;  // the command-line flags it stands for
    std::function<void(TrainConfig&)> apply;
};
// Every trick of the comparison, in table order; swa's start depends on `epochs`.
std::vector<TrickSpec> compare_tricks(int64_t epochs);
// The names in `list` ("baseline,fgm,..." or "all"), checked against compare_tricks.
std::vector<std::string> parse_trick_list(const std::string& list);

struct CompareOptions {
    TrainConfig base;  // epochs, batch, lr, device; seed = the first seed
    DataConfig data;   // its split is ignored: `splits` says which
    int64_t seeds = 3;
    std::vector<std::string> tricks;  // empty = all
    std::vector<SplitKind> splits = {SplitKind::Random, SplitKind::Temporal};
    RobustnessOptions robust;
    std::string out_dir;  // "" = write nothing
    int threads = 0;
    bool progress = false;  // per-epoch lines of every run on stderr
    std::function<bool()> should_stop;
};

struct CompareRun {
    std::string trick, split;
    uint64_t seed = 0;
    RunResult result;
};

struct CompareResult {
    std::vector<CompareRun> runs;
    std::vector<std::string> tricks;  // in table order
    std::vector<std::string> splits;
    int64_t seeds = 0, epochs = 0;
    std::string model = "bag";  // --model
    std::vector<double> epsilons, noise;
    double sigma = 0;
    nlohmann::json data;  // per split: train/test docs, vocabulary, source
    bool is_sample = false;
    bool interrupted = false;
    double wall_s = 0;
};

// Trains every (trick, split, seed); `log` gets one line per finished run.
CompareResult run_compare(const CompareOptions& options, std::ostream& log);

// The table as Markdown (what the program prints and report.md holds).
std::string report_table(const CompareResult& result);
// Writes report.md, report.html and compare.json under `out_dir`.
void write_report(const CompareResult& result, const std::string& out_dir);
// The self-contained HTML page (inline CSS and SVG, no script, no network; report_html.cpp).
std::string report_html(const CompareResult& result);

// ---- pieces shared by the Markdown and HTML writers ---------------------------------------------
struct Stat {
    double mean = 0, std = 0;  // std: sample standard deviation (n - 1), 0 for one value
    int64_t n = 0;
};
Stat stat_of(const std::vector<double>& values);
std::string fmt_fixed(double v, int digits);
// "98.21 ± 0.15" (values times `scale`), the mean alone for one value, "—" for none.
std::string fmt_stat(const Stat& s, int digits, double scale);
// One value per run of `trick` on `split`.
std::vector<double> collect(const CompareResult& r, const std::string& trick,
                            const std::string& split,
                            const std::function<double(const CompareRun&)>& get);
struct TableData {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
};
TableData build_table(const CompareResult& r);
// The sentence under the table: seeds, epochs, data sizes, what the columns measure.
std::string report_caption(const CompareResult& r);

}  // namespace textclf
