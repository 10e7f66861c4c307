// examples/text_classifier/main.cpp — the text_classifier program: its command line (CLI11), Ctrl-C
// handling and output. The work is in the library files beside it:
//   text_classifier [flags]                 train (run.h): --out DIR gets model.safetensors,
//                                           vocab.txt, run.json, checkpoint.safetensors
//   text_classifier predict --model DIR [FILE...]   classify files (or stdin) with a saved model
//   text_classifier compare [--seeds N] [--tricks list]   every trick, several seeds, the
//                                           robustness report (report.h)
// Exit status: 0 done, 1 error (message on stderr), 2 bad command line, 130 stopped by Ctrl-C
// (after writing the checkpoint; --resume DIR continues).
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "core/check.h"
#include "core/comm.h"
#include "core/parallel.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/report.h"
#include "examples/text_classifier/run.h"

namespace {

using json = nlohmann::json;
using namespace textclf;

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
    g_interrupted = 1;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

// Seconds since this process started (Linux: /proc/self/stat field 22 against CLOCK_BOOTTIME,
// 10 ms resolution); -1 where unavailable.
double process_age_s() {
    std::ifstream f("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return -1;
    std::istringstream rest(stat.substr(paren + 2));
    std::string field;
    for (int i = 3; i <= 22 && (rest >> field); ++i) {
        if (i == 22) {
            struct timespec now {};
            ::clock_gettime(CLOCK_BOOTTIME, &now);
            const double start = std::stod(field) / static_cast<double>(::sysconf(_SC_CLK_TCK));
            return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec) -
                   start;
        }
    }
    return -1;
}

// The flags both training and compare take.
void add_common(CLI::App& app, TrainConfig& t, DataConfig& d, std::string& data_dir, int& threads,
                std::string& out) {
    app.add_option("--epochs", t.epochs, "training epochs")->capture_default_str();
    app.add_option("--batch", t.batch, "samples per optimizer step (the effective batch)")
        ->capture_default_str();
    app.add_option("--lr", t.lr,
                   "learning rate (Adam; the transformer: AdamW, peak of the schedule)")
        ->capture_default_str();
    app.add_option("--seed", t.seed, "seed of the initialisation and the data order")
        ->capture_default_str();
    app.add_option("--threads", threads, "CPU threads (0: all cores)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--device", t.device, "cpu, cuda or cuda:N")->capture_default_str();
    app.add_option("--data", data_dir,
                   "corpus folder (SpamAssassin: holding easy-ham-1 ... spam-2; WordNet: "
                   "data.noun or its folder); default: the fetched cache, else the committed "
                   "sample");
    app.add_option("--dataset", d.dataset, "spam or wordnet")
        ->check(CLI::IsMember({"spam", "wordnet"}))
        ->capture_default_str();
    app.add_option("--out", out, "output folder")->capture_default_str();
    app.add_option("--model", t.model,
                   "bag (a bag of embeddings and an MLP) or transformer (BERT-Tiny by default)")
        ->check(CLI::IsMember({"bag", "transformer"}))
        ->capture_default_str();
}

// The transformer's defaults where they differ from the bag model's (`--help` states both), and
// the bag model's flags refused for it.
void apply_model_defaults(CLI::App& app, TrainConfig& t, RobustnessOptions& robust) {
    if (t.model != "transformer") return;
    auto given = [&](const char* flag) {
        const CLI::Option* o = app.get_option_no_throw(flag);
        return o != nullptr && o->count() > 0;
    };
    if (given("--dim"))
        throw minidl::ValueError(
            "--dim belongs to the bag model; the transformer's width is --hidden");
    if (!given("--hidden")) t.hidden = 128;
    if (!given("--clip")) t.clip = 1.0;
    // Evaluation in batches of 64 (as bench/torch_transformer_classifier.py): a batch of 512
    // would hold [512, 128, 512] feed-forward activations, 128 MiB each, for no speed gain.
    t.eval_batch = 64;
    robust.batch = 64;
}

void print_human_summary(const json& s, const std::string& out) {
    std::printf("%s on %s (%s split%s): %lld train / %lld test docs, vocabulary %lld\n",
                s["tricks"].get<std::string>().c_str(), s["dataset"].get<std::string>().c_str(),
                s["split"].get<std::string>().c_str(),
                s["is_sample"].get<bool>() ? ", OFFLINE SAMPLE" : "",
                static_cast<long long>(s["train_docs"].get<int64_t>()),
                static_cast<long long>(s["test_docs"].get<int64_t>()),
                static_cast<long long>(s["vocab"].get<int64_t>()));
    std::printf(
        "test accuracy %.4f, macro-F1 %.4f; %lld epochs in %.2f s (%.0f samples/s, %d "
        "threads)\n",
        s["test_accuracy"].get<double>(), s["test_macro_f1"].get<double>(),
        static_cast<long long>(s["epochs"].get<int64_t>()), s["train_s"].get<double>(),
        s["train_samples_per_s"].get<double>(), s["threads"].get<int>());
    if (s.contains("val_accuracy"))
        std::printf("validation accuracy %.4f (%lld held-out training messages)\n",
                    s["val_accuracy"].get<double>(),
                    static_cast<long long>(s["val_docs"].get<int64_t>()));
    if (s.contains("attack_accuracy")) {
        std::printf("attack accuracy:");
        for (const auto& [k, v] : s["attack_accuracy"].items())
            std::printf(" eps=%s %.4f", k.c_str(), v.get<double>());
        std::printf("\nnoisy-text accuracy:");
        for (const auto& [k, v] : s["noisy_accuracy"].items())
            std::printf(" p=%s %.4f", k.c_str(), v.get<double>());
        std::printf("\nflatness (sigma %g): %.4f\n", s["flatness_sigma"].get<double>(),
                    s["flatness"].get<double>());
    }
    if (s.value("on_nonfinite", std::string()) == "skip")
        std::printf("%lld batches skipped for a non-finite loss or gradient\n",
                    static_cast<long long>(s.value("nonfinite_skipped", int64_t{0})));
    if (!out.empty()) std::printf("outputs in %s\n", out.c_str());
}

int run_predict(const std::string& model_dir, const std::vector<std::string>& files, bool lines,
                bool as_json, bool logits) {
    const Predictor predictor(model_dir);
    std::vector<std::string> names, docs;
    auto add = [&](const std::string& name, std::string text) {
        if (!lines) {
            names.push_back(name);
            docs.push_back(std::move(text));
            return;
        }
        std::istringstream in(text);
        std::string line;
        for (int64_t n = 1; std::getline(in, line); ++n) {
            if (line.empty()) continue;
            names.push_back(name + ":" + std::to_string(n));
            docs.push_back(line);
        }
    };
    if (files.empty()) {
        add("-", std::string(std::istreambuf_iterator<char>(std::cin), {}));
    } else {
        for (const auto& f : files)
            add(f, read_file(f));
    }
    const auto preds = predictor.predict(docs);
    for (size_t i = 0; i < preds.size(); ++i) {
        const auto& p = preds[i];
        if (as_json) {
            json j = {{"input", names[i]}, {"label", p.name}, {"probabilities", json::object()}};
            for (size_t c = 0; c < p.probabilities.size(); ++c)
                j["probabilities"][predictor.classes()[c]] = p.probabilities[c];
            if (logits) j["logits"] = p.logits;
            std::cout << j.dump() << "\n";
        } else {
            std::cout << names[i] << "\t" << p.name << "\t" << p.probabilities[p.label];
            if (logits)
                for (float l : p.logits)
                    std::cout << "\t" << l;
            std::cout << "\n";
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "text_classifier — a text classifier (a bag of embeddings, or a BERT-Tiny transformer "
        "with --model transformer) on real e-mail (or your own TSV/JSONL data) with every "
        "training trick one flag away"};
    app.require_subcommand(0, 1);

    // ---- training (no subcommand) --------------------------------------------------------------
    RunOptions ro;
    ro.out_dir = "out/text_classifier";
    std::string data_dir, split = "random", resume_dir, device_flag;
    bool json_line = false, quiet = false;
    double swa_lr = -1;
    add_common(app, ro.train, ro.data, data_dir, ro.threads, ro.out_dir);
    TrainConfig& t = ro.train;
    app.add_option("--dim", t.dim, "bag model: embedding width C (64)");
    app.add_option("--hidden", t.hidden,
                   "bag model: hidden layer width H (64); transformer: hidden size (128)");
    app.add_option("--layers", t.layers, "transformer: encoder layers")->capture_default_str();
    app.add_option("--heads", t.heads, "transformer: attention heads")->capture_default_str();
    app.add_option("--intermediate", t.intermediate, "transformer: feed-forward width")
        ->capture_default_str();
    app.add_option("--max-len", t.max_len,
                   "transformer: ids per document, [CLS] and [SEP] included (at most 512)")
        ->capture_default_str();
    app.add_option("--warmup", t.warmup,
                   "transformer: lr warm-up over this fraction of the optimizer steps, then "
                   "linear decay to 0")
        ->capture_default_str();
    app.add_option("--weight-decay", t.weight_decay,
                   "transformer: AdamW weight decay (not on biases and LayerNorm weights)")
        ->capture_default_str();
    app.add_flag("--checkpoint-activations", t.checkpoint_activations,
                 "transformer: recompute each encoder layer's activations in backward instead "
                 "of keeping them (less memory, more time; the same gradients)");
    app.add_option("--fgm", t.fgm, "FGM adversarial training with this epsilon (0 = off)");
    app.add_flag("--pgd", t.pgd, "PGD adversarial training on the embedding table");
    app.add_option("--pgd-eps", t.pgd_eps, "PGD radius")->capture_default_str();
    app.add_option("--pgd-alpha", t.pgd_alpha, "PGD step size")->capture_default_str();
    app.add_option("--pgd-steps", t.pgd_steps, "PGD ascent steps K")->capture_default_str();
    app.add_flag("--freelb", t.freelb, "FreeLB adversarial training on the bag embeddings");
    app.add_option("--freelb-steps", t.freelb_steps, "FreeLB passes K")->capture_default_str();
    app.add_option("--freelb-lr", t.freelb_lr, "FreeLB ascent step")->capture_default_str();
    app.add_option("--freelb-init", t.freelb_init, "FreeLB initial magnitude")
        ->capture_default_str();
    app.add_flag("--awp", t.awp, "AWP adversarial weight perturbation");
    app.add_option("--awp-lr", t.awp_lr, "AWP step, relative to ||w||")->capture_default_str();
    app.add_option("--awp-eps", t.awp_eps, "AWP elementwise trust region")->capture_default_str();
    app.add_option("--ema", t.ema,
                   "evaluate an exponential moving average of the weights with "
                   "this decay (0 = off)");
    app.add_flag("--ema-warmup", t.ema_warmup, "EMA decay min(d, (1+t)/(10+t))");
    app.add_option("--swa-start", t.swa_start,
                   "SWA: average the weights after every epoch from the end of epoch E (1-based; "
                   "0 = off)");
    app.add_option("--swa-lr", swa_lr, "SWA learning rate after epoch E (default: --lr)");
    app.add_option("--amp", t.amp, "mixed precision: f16 (with loss scaling) or bf16")
        ->check(CLI::IsMember({"f16", "bf16"}));
    app.add_option("--accum", t.accum, "micro-batches per optimizer step")->capture_default_str();
    app.add_option("--clip", t.clip,
                   "clip the gradient norm to this (0 = off; default 0 for the bag model, 1 for "
                   "the transformer)");
    app.add_option("--on-nonfinite", t.on_nonfinite,
                   "a non-finite loss or gradient (without --amp f16): stop (exit 1, naming the "
                   "step) or skip that batch's optimizer step")
        ->check(CLI::IsMember({"stop", "skip"}))
        ->capture_default_str();
    app.add_option("--replicas", t.replicas,
                   "data parallelism in this process: N replicas, one thread each (on GPUs: one "
                   "per device from --device on)")
        ->capture_default_str();
    app.add_flag("--distributed", t.distributed,
                 "data parallelism over processes: run under mpirun -np N, each rank training on "
                 "1/N of every batch (MPI; NCCL between GPUs); rank 0 writes the outputs");
    app.add_option("--split", split, "random or temporal (SpamAssassin)")
        ->check(CLI::IsMember({"random", "temporal"}))
        ->capture_default_str();
    app.add_flag("--val", ro.data.val, "hold out training messages whose MD5 ends in 3");
    app.add_option("--train", ro.data.train_file,
                   "your training data: TSV (label<TAB>text) or "
                   "JSONL ({\"label\", \"text\"})");
    app.add_option("--test", ro.data.test_file, "your test data, same format");
    app.add_option("--resume", resume_dir, "continue the run whose checkpoint is in DIR");
    app.add_option("--init-from", ro.init_from, "initial weights (a model.safetensors)");
    app.add_flag("--json", json_line, "print one JSON summary line on stdout");
    app.add_flag("--robustness", ro.robustness, "measure the attack, noise and flatness figures");
    app.add_option("--epsilons", ro.robust.epsilons, "attack radii")->delimiter(',');
    app.add_option("--noise", ro.robust.noise, "token edit probabilities")->delimiter(',');
    app.add_option("--sigma", ro.robust.sigma, "flatness: relative weight noise")
        ->capture_default_str();
    app.add_flag("--quiet", quiet, "no progress on stderr");

    // ---- predict -------------------------------------------------------------------------------
    CLI::App* predict =
        app.add_subcommand("predict", "classify files (or stdin) with a saved model");
    std::string model_dir;
    std::vector<std::string> files;
    bool lines = false, predict_json = false, logits = false;
    predict->add_option("--model", model_dir, "a run's --out folder")->required();
    predict->add_option("files", files, "files to classify (default: stdin)");
    predict->add_flag("--lines", lines, "each non-empty line is a document");
    predict->add_flag("--json", predict_json, "one JSON object per document");
    predict->add_flag("--logits", logits, "also print the logits");

    // ---- compare -------------------------------------------------------------------------------
    CLI::App* compare = app.add_subcommand("compare",
                                           "every trick over several seeds and the "
                                           "robustness report");
    CompareOptions co;
    co.out_dir = "out/compare";
    std::string cmp_data_dir, tricks = "all", splits = "random,temporal";
    add_common(*compare, co.base, co.data, cmp_data_dir, co.threads, co.out_dir);
    compare->add_option("--max-len", co.base.max_len, "transformer: ids per document")
        ->capture_default_str();
    compare->add_option("--seeds", co.seeds, "seeds per trick")->capture_default_str();
    compare
        ->add_option("--tricks", tricks,
                     "comma-separated: baseline,fgm,pgd,freelb,awp,ema,"
                     "swa,amp,bf16,accum (or all; amp is f16)")
        ->capture_default_str();
    compare->add_option("--splits", splits, "random,temporal or one of them")
        ->capture_default_str();
    compare->add_option("--epsilons", co.robust.epsilons, "attack radii")->delimiter(',');
    compare->add_option("--noise", co.robust.noise, "token edit probabilities")->delimiter(',');
    compare->add_option("--sigma", co.robust.sigma, "flatness: relative weight noise")
        ->capture_default_str();
    compare->add_flag("--progress", co.progress, "per-epoch lines of every run");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; any other command-line mistake exits 2 (as documented).
        return app.exit(e) == 0 ? 0 : 2;
    }
    std::signal(SIGINT, on_sigint);
    const auto stop = [] { return g_interrupted != 0; };
    try {
        if (predict->parsed()) return run_predict(model_dir, files, lines, predict_json, logits);

        if (compare->parsed()) {
            apply_model_defaults(*compare, co.base, co.robust);
            if (!cmp_data_dir.empty()) co.data.data_dir = cmp_data_dir;
            co.tricks = parse_trick_list(tricks);
            co.splits.clear();
            std::stringstream ss(splits);
            for (std::string s; std::getline(ss, s, ',');)
                if (!s.empty()) co.splits.push_back(parse_split_kind(s));
            co.should_stop = stop;
            std::cerr << "compare: " << co.tricks.size() << " tricks x " << co.seeds << " seeds x "
                      << co.splits.size() << " splits, " << co.base.epochs
                      << " epochs each; report in " << co.out_dir << "\n";
            const CompareResult r = run_compare(co, std::cerr);
            if (!co.out_dir.empty()) write_report(r, co.out_dir);
            std::cout << "\n";
            if (r.is_sample)
                std::cout << "OFFLINE SAMPLE, not the full corpus: a smoke test only.\n";
            std::cout << report_caption(r) << "\n\n" << report_table(r) << "\n";
            if (!co.out_dir.empty())
                std::cout << "report: " << co.out_dir << "/report.md, " << co.out_dir
                          << "/report.html\n";
            return r.interrupted ? 130 : 0;
        }

        apply_model_defaults(app, t, ro.robust);
        if (!data_dir.empty()) ro.data.data_dir = data_dir;
        ro.data.split = parse_split_kind(split);
        if (swa_lr >= 0) t.swa_lr = swa_lr;
        if (!resume_dir.empty()) {
            ro.resume_dir = resume_dir;
            if (app.get_option("--out")->count() == 0) ro.out_dir = resume_dir;
            if (app.get_option("--device")->count() > 0) ro.device = t.device;
        }
        const bool main_process = minidl::is_main_process();  // rank 0 under mpirun
        ro.progress = !quiet && main_process;
        ro.startup_s = process_age_s();  // process start -> ready to read the data
        ro.should_stop = stop;
        const RunResult r = run_training(ro);
        if (r.interrupted) {
            std::cerr << "text_classifier: interrupted; the training state is in " << ro.out_dir
                      << "/checkpoint.safetensors — continue with --resume " << ro.out_dir << "\n";
            return 130;
        }
        if (!main_process) return 0;
        if (json_line) {
            std::cout << r.summary.dump() << std::endl;
        } else {
            print_human_summary(r.summary, ro.out_dir);
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "text_classifier: " << e.what() << "\n";
        return 1;
    }
}
