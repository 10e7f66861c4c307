// examples/text_classifier/report.cpp — the compare runs, their aggregation and the Markdown
// table (see report.h; the HTML page is in report_html.cpp).
#include "examples/text_classifier/report.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <ostream>
#include <sstream>

#include "core/check.h"
#include "core/parallel.h"
#include "examples/text_classifier/io.h"

namespace textclf {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<TrickSpec> compare_tricks(int64_t epochs) {
    const int64_t swa_start = std::max<int64_t>(1, epochs - 2);
    return {
        {"baseline", "", [](TrainConfig&) {}},
        {"fgm", "--fgm 1", [](TrainConfig& c) { c.fgm = 1.0; }},
        {"pgd", "--pgd", [](TrainConfig& c) { c.pgd = true; }},
        {"freelb", "--freelb", [](TrainConfig& c) { c.freelb = true; }},
        {"awp", "--awp", [](TrainConfig& c) { c.awp = true; }},
        {"ema", "--ema 0.999 --ema-warmup",
         [](TrainConfig& c) {
             c.ema = 0.999;
             c.ema_warmup = true;
         }},
        {"swa", "--swa-start " + std::to_string(swa_start),
         [swa_start](TrainConfig& c) { c.swa_start = swa_start; }},
        {"amp", "--amp f16", [](TrainConfig& c) { c.amp = "f16"; }},
        {"bf16", "--amp bf16", [](TrainConfig& c) { c.amp = "bf16"; }},
        {"accum", "--accum 4", [](TrainConfig& c) { c.accum = 4; }},
    };
}

std::vector<std::string> parse_trick_list(const std::string& list) {
    std::vector<std::string> known;
    for (const auto& t : compare_tricks(5))
        known.push_back(t.name);
    if (list.empty() || list == "all") return known;
    std::vector<std::string> out;
    std::stringstream ss(list);
    std::string name;
    while (std::getline(ss, name, ',')) {
        if (name.empty()) continue;
        MDL_CHECK(std::find(known.begin(), known.end(), name) != known.end(), minidl::ValueError,
                  "--tricks: unknown trick '", name, "' (known: baseline, fgm, pgd, freelb, awp, ",
                  "ema, swa, amp, bf16, accum, or all)");
        MDL_CHECK(std::find(out.begin(), out.end(), name) == out.end(), minidl::ValueError,
                  "--tricks: '", name, "' given twice");
        out.push_back(name);
    }
    MDL_CHECK(!out.empty(), minidl::ValueError, "--tricks: no trick named");
    return out;
}

CompareResult run_compare(const CompareOptions& o, std::ostream& log) {
    const auto t0 = std::chrono::steady_clock::now();
    MDL_CHECK(o.seeds >= 1, minidl::ValueError, "--seeds must be at least 1, got ", o.seeds);
    validate(o.base);
    apply_threads_flag(o.threads);
    CompareResult res;
    res.tricks = o.tricks.empty() ? parse_trick_list("all") : o.tricks;
    res.seeds = o.seeds;
    res.epochs = o.base.epochs;
    res.model = o.base.model;
    res.epsilons = o.robust.epsilons;
    res.noise = o.robust.noise;
    res.sigma = o.robust.sigma;

    // One corpus, tokenized once; each split prepared from it.
    const std::shared_ptr<const LoadedCorpus> corpus = load_corpus(o.data);
    res.is_sample = corpus->data.is_sample;
    std::vector<PreparedData> prepared;
    if (corpus->fixed_split) {
        prepared.push_back(prepare_data(corpus, SplitKind::Random, false, input_format(o.base)));
    } else {
        MDL_CHECK(!o.splits.empty(), minidl::ValueError, "compare: no split to run");
        for (SplitKind k : o.splits)
            prepared.push_back(prepare_data(corpus, k, false, input_format(o.base)));
    }
    for (const auto& p : prepared) {
        res.splits.push_back(p.split_name);
        res.data[p.split_name] = data_info(o.data, p);
    }
    if (res.is_sample)
        log << "compare: the full corpus is not in " << default_data_dir()
            << "; running on the committed offline sample (" << corpus->data.size()
            << " messages) — figures are a smoke test, not the corpus's\n";

    std::map<std::string, TrickSpec> specs;
    for (auto& t : compare_tricks(o.base.epochs))
        specs.emplace(t.name, t);
    const size_t total = static_cast<size_t>(o.seeds) * prepared.size() * res.tricks.size();
    size_t done = 0;
    for (int64_t s = 0; s < o.seeds && !res.interrupted; ++s) {
        const uint64_t seed = o.base.seed + static_cast<uint64_t>(s);
        for (size_t p = 0; p < prepared.size() && !res.interrupted; ++p) {
            const PreparedData& data = prepared[p];
            // The attack and noise sweeps are measured on the in-distribution split only.
            const bool robust = data.split_name != "temporal";
            for (const std::string& trick : res.tricks) {
                RunOptions ro;
                ro.train = o.base;
                ro.train.seed = seed;
                specs.at(trick).apply(ro.train);
                ro.data = o.data;
                ro.robustness = robust;
                ro.robust = o.robust;
                ro.progress = o.progress;
                ro.progress_prefix = trick + " " + data.split_name + " s" + std::to_string(seed);
                ro.write_checkpoints = false;
                ro.should_stop = o.should_stop;
                if (!o.out_dir.empty())
                    ro.out_dir = (fs::path(o.out_dir) / "runs" /
                                  (trick + "-" + data.split_name + "-s" + std::to_string(seed)))
                                     .string();
                CompareRun run{trick, data.split_name, seed, run_training(ro, &data)};
                ++done;
                const json& sm = run.result.summary;
                log << "[" << done << "/" << total << "] " << trick << " " << data.split_name
                    << " seed " << seed << ": accuracy "
                    << fmt_fixed(100.0 * sm["test_accuracy"].get<double>(), 2) << " %, macro-F1 "
                    << fmt_fixed(sm["test_macro_f1"].get<double>(), 4) << ", "
                    << fmt_fixed(sm["train_s"].get<double>(), 1) << " s training" << std::endl;
                if (run.result.interrupted)
                    res.interrupted = true;
                else
                    res.runs.push_back(std::move(run));
                if (res.interrupted) break;
            }
        }
    }
    res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
}

// ---- aggregation ------------------------------------------------------------------------------

Stat stat_of(const std::vector<double>& v) {
    Stat s;
    s.n = static_cast<int64_t>(v.size());
    if (v.empty()) return s;
    double sum = 0;
    for (double x : v)
        sum += x;
    s.mean = sum / static_cast<double>(v.size());
    if (v.size() > 1) {
        double sq = 0;
        for (double x : v)
            sq += (x - s.mean) * (x - s.mean);
        s.std = std::sqrt(sq / static_cast<double>(v.size() - 1));
    }
    return s;
}

std::string fmt_fixed(double v, int digits) {
    std::ostringstream os;
    os.setf(std::ios::fixed);
    os.precision(digits);
    os << v;
    return os.str();
}

std::string fmt_stat(const Stat& s, int digits, double scale) {
    if (s.n == 0) return "—";
    std::string out = fmt_fixed(s.mean * scale, digits);
    if (s.n > 1) out += " ± " + fmt_fixed(s.std * scale, digits);
    return out;
}

std::vector<double> collect(const CompareResult& r, const std::string& trick,
                            const std::string& split,
                            const std::function<double(const CompareRun&)>& get) {
    std::vector<double> v;
    for (const auto& run : r.runs)
        if (run.trick == trick && run.split == split) v.push_back(get(run));
    return v;
}

namespace {
double time_per_epoch(const CompareRun& run) {
    const json& s = run.result.summary;
    const double epochs = s["epochs"].get<double>();
    return epochs > 0 ? s["train_s"].get<double>() / epochs : 0.0;
}
}  // namespace

TableData build_table(const CompareResult& r) {
    TableData t;
    const std::string in_dist = r.splits.empty() ? "random" : r.splits.front();
    const bool has_temporal =
        std::find(r.splits.begin(), r.splits.end(), "temporal") != r.splits.end();
    t.header = {"trick", "accuracy % (" + in_dist + ")", "macro-F1"};
    if (has_temporal) t.header.push_back("accuracy % (temporal)");
    for (double e : r.epsilons)
        if (e > 0) t.header.push_back("attack ε=" + number_key(e));
    for (double p : r.noise)
        t.header.push_back("noisy p=" + number_key(p));
    t.header.push_back("flatness σ=" + number_key(r.sigma));
    t.header.push_back("time/epoch × baseline");

    // The baseline's mean time per epoch on each split (the splits differ in size).
    std::map<std::string, double> base_time;
    for (const auto& split : r.splits)
        base_time[split] = stat_of(collect(r, "baseline", split, time_per_epoch)).mean;

    auto acc = [](const CompareRun& run) {
        return run.result.summary["test_accuracy"].get<double>();
    };
    for (const std::string& trick : r.tricks) {
        std::vector<std::string> row = {trick};
        row.push_back(fmt_stat(stat_of(collect(r, trick, in_dist, acc)), 2, 100));
        row.push_back(
            fmt_stat(stat_of(collect(r, trick, in_dist,
                                     [](const CompareRun& run) {
                                         return run.result.summary["test_macro_f1"].get<double>();
                                     })),
                     4, 1));
        if (has_temporal)
            row.push_back(fmt_stat(stat_of(collect(r, trick, "temporal", acc)), 2, 100));
        auto robust = [&](const std::function<double(const RobustnessResult&)>& get) {
            return stat_of(collect(r, trick, in_dist, [&](const CompareRun& run) {
                return run.result.robustness ? get(*run.result.robustness) : std::nan("");
            }));
        };
        for (size_t k = 0; k < r.epsilons.size(); ++k)
            if (r.epsilons[k] > 0)
                row.push_back(fmt_stat(
                    robust([k](const RobustnessResult& x) { return x.attack.at(k).second; }), 2,
                    100));
        for (size_t k = 0; k < r.noise.size(); ++k)
            row.push_back(fmt_stat(
                robust([k](const RobustnessResult& x) { return x.noisy.at(k).second; }), 2, 100));
        row.push_back(fmt_stat(robust([](const RobustnessResult& x) { return x.flatness; }), 4, 1));
        // Without a baseline run on a split there is nothing to relate to: "—", not 0.
        std::vector<double> times;
        for (const auto& split : r.splits)
            if (base_time[split] > 0)
                for (double x : collect(r, trick, split, time_per_epoch))
                    times.push_back(x / base_time[split]);
        row.push_back(fmt_stat(stat_of(times), 2, 1));
        t.rows.push_back(row);
    }
    return t;
}

std::string report_table(const CompareResult& r) {
    const TableData t = build_table(r);
    std::ostringstream os;
    os << "|";
    for (const auto& h : t.header)
        os << " " << h << " |";
    os << "\n|";
    for (size_t i = 0; i < t.header.size(); ++i)
        os << (i == 0 ? "---|" : "---:|");
    os << "\n";
    for (const auto& row : t.rows) {
        os << "|";
        for (const auto& c : row)
            os << " " << c << " |";
        os << "\n";
    }
    return os.str();
}

std::string report_caption(const CompareResult& r) {
    std::ostringstream os;
    os << (r.model == "transformer" ? "Transformer (BERT-Tiny), " : "Bag of embeddings, ")
       << r.seeds << (r.seeds == 1 ? " seed" : " seeds") << ", " << r.epochs << " epochs; ";
    bool first = true;
    for (const auto& split : r.splits) {
        const json& d = r.data[split];
        os << (first ? "" : "; ") << split << " split: " << d["train_docs"].get<int64_t>()
           << " train / " << d["test_docs"].get<int64_t>() << " test documents, vocabulary "
           << d["vocab"].get<int64_t>();
        first = false;
    }
    os << (r.seeds > 1 ? ". Mean ± sample std over seeds" : ". One seed (no spread shown)");
    os << "; time per epoch relative to the baseline's mean on the same split. Attack: one "
          "normalised gradient step of L2 radius ε on each document's token "
          "embeddings; noisy: each token edited with probability p; flatness: mean test-loss "
          "increase under relative Gaussian weight noise σ (lower = flatter).";
    return os.str();
}

void write_report(const CompareResult& r, const std::string& out_dir) {
    fs::create_directories(out_dir);
    std::ostringstream md;
    md << "# text_classifier compare\n\n";
    if (r.is_sample) md << "**Offline sample, not the full corpus: a smoke test only.**\n\n";
    md << report_caption(r) << "\n\n" << report_table(r);
    md << "\nWall time: " << fmt_fixed(r.wall_s, 1) << " s. Tricks:";
    for (const auto& t : compare_tricks(r.epochs))
        if (std::find(r.tricks.begin(), r.tricks.end(), t.name) != r.tricks.end())
            md << " " << t.name << " = `" << (t.flags.empty() ? "(no flag)" : t.flags) << "`;";
    md << "\nEach run's record: runs/<trick>-<split>-s<seed>/run.json.\n";
    write_file_atomic((fs::path(out_dir) / "report.md").string(), md.str());
    write_file_atomic((fs::path(out_dir) / "report.html").string(), report_html(r));

    json runs = json::array();
    for (const auto& run : r.runs)
        runs.push_back({{"trick", run.trick},
                        {"split", run.split},
                        {"seed", run.seed},
                        {"summary", run.result.summary}});
    const TableData t = build_table(r);
    json j = {{"seeds", r.seeds},   {"epochs", r.epochs},
              {"tricks", r.tricks}, {"splits", r.splits},
              {"data", r.data},     {"is_sample", r.is_sample},
              {"wall_s", r.wall_s}, {"table", {{"header", t.header}, {"rows", t.rows}}},
              {"runs", runs}};
    write_file_atomic((fs::path(out_dir) / "compare.json").string(), j.dump(2) + "\n");
}

}  // namespace textclf
