// examples/text_classifier/run.cpp — see run.h.
#include "examples/text_classifier/run.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/comm.h"
#include "core/parallel.h"
#include "examples/text_classifier/checkpoint.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/kill_points.h"
#include "examples/text_classifier/progress.h"

namespace textclf {

namespace fs = std::filesystem;
using json = nlohmann::json;
using minidl::Tensor;

namespace {

std::string mode_name(TextMode mode) {
    return mode == TextMode::Email ? "email" : "plain";
}

TextMode parse_mode(const std::string& name, const std::string& where) {
    if (name == "email") return TextMode::Email;
    MDL_CHECK(name == "plain", minidl::FormatError, where, ": unknown text mode '", name, "'");
    return TextMode::Plain;
}

DataConfig data_config_from_info(const json& info) {
    DataConfig d;
    d.dataset = info.value("dataset", std::string("spam"));
    if (d.dataset == "files") d.dataset = "spam";  // the files decide
    if (info.contains("data_dir") && !info["data_dir"].is_null())
        d.data_dir = info["data_dir"].get<std::string>();
    d.train_file = info.value("train_file", std::string());
    d.test_file = info.value("test_file", std::string());
    const std::string split = info.value("split", std::string("random"));
    if (split == "random" || split == "temporal") d.split = parse_split_kind(split);
    d.val = info.value("val", false);
    return d;
}

}  // namespace

double peak_rss_mb() {
    struct rusage usage {};
    ::getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

json data_info(const DataConfig& config, const PreparedData& data) {
    json j = {{"dataset", data.corpus->kind},
              {"source", data.corpus->data.source},
              {"is_sample", data.is_sample()},
              {"split", data.split_name},
              {"val", config.val},
              {"train_file", config.train_file},
              {"test_file", config.test_file},
              {"mode", mode_name(data.mode())},
              {"classes", data.classes()},
              {"vocab", data.vocab.size()},
              {"train_docs", data.train.size()},
              {"val_docs", data.val.size()},
              {"test_docs", data.test.size()}};
    j["data_dir"] = config.data_dir ? json(*config.data_dir) : json(nullptr);
    return j;
}

void apply_threads_flag(int threads) {
    MDL_CHECK(threads >= 0, minidl::ValueError, "--threads ", threads,
              ": must be at least 0 (0: all cores)");
    if (threads == 0) return;
    try {
        minidl::set_num_threads(threads);
    } catch (const minidl::ValueError& e) {
        throw minidl::ValueError(minidl::detail::concat("--threads ", threads, ": ", e.what()));
    }
}

RunResult run_training(const RunOptions& opt, const PreparedData* prepared) {
    RunOptions o = opt;
    std::optional<Checkpoint> resume;
    if (o.resume_dir) {
        const std::string path = (fs::path(*o.resume_dir) / kCheckpointFile).string();
        resume = load_checkpoint(path);
        o.train = resume->config;
        if (o.device) o.train.device = *o.device;
        o.data = data_config_from_info(resume->run_info);
        if (o.out_dir.empty()) o.out_dir = *o.resume_dir;
    }
    apply_threads_flag(o.threads);
    validate(o.train);
    o.data.format = input_format(o.train);

    // ---- data --------------------------------------------------------------------------------
    std::optional<PreparedData> own;
    if (!prepared) {
        own = load_and_prepare(o.data);
        prepared = &*own;
    }
    const PreparedData& data = *prepared;
    if (data.is_sample() && o.progress)
        std::cerr << "text_classifier: training on the committed offline sample ("
                  << data.corpus->data.size() << " messages, " << data.corpus->data.source
                  << "), not the full corpus: a smoke test, not the corpus's figures "
                     "(scripts/fetch_data.sh fetches the corpus)\n";
    const json info = data_info(o.data, data);
    if (resume) {
        MDL_CHECK(resume->run_info.value("vocab", int64_t{-1}) == data.vocab.size(),
                  minidl::StateError, "--resume: the checkpoint's vocabulary has ",
                  resume->run_info.value("vocab", int64_t{-1}), " entries but the data gives ",
                  data.vocab.size(), " (different data?)");
    }

    // ---- training ----------------------------------------------------------------------------
    // Under mpirun (--distributed) rank 0 alone writes files; the others train and evaluate.
    const bool writes = !o.out_dir.empty() && minidl::is_main_process();
    if (writes) {
        fs::create_directories(o.out_dir);
        remove_abandoned_temp_files(o.out_dir);
    }
    Trainer trainer(o.train, data, resume ? std::string() : o.init_from);
    if (resume) trainer.load_state_dict(resume->state);
    const std::string ckpt_path =
        writes ? (fs::path(o.out_dir) / kCheckpointFile).string() : std::string();
    ProgressBar bar(std::cerr, ProgressBar::stderr_is_terminal(), o.progress_prefix);
    TrainHooks hooks;
    hooks.should_stop = o.should_stop;
    // Crash tests only (kill_points.h): the process may be set to kill itself at a chosen step.
    if (std::function<void()> kill_poll = arm_kill_points_from_env())
        hooks.should_stop = [kill_poll, stop = o.should_stop] {
            kill_poll();
            return stop && stop();
        };
    hooks.map_loss = o.map_loss;
    if (o.write_checkpoints && !ckpt_path.empty())
        hooks.checkpoint = [&] { save_checkpoint(ckpt_path, trainer, info); };
    if (o.progress) hooks.progress = &bar;
    const bool finished = trainer.run(hooks);

    RunResult result;
    result.interrupted = !finished;
    result.history = trainer.history();
    result.loss_curve = trainer.loss_curve();

    // ---- final evaluation --------------------------------------------------------------------
    std::shared_ptr<TextClassifier> final_model = trainer.evaluation_model();
    const Metrics test = evaluate(*final_model, trainer.test_docs(), o.train.eval_batch);
    std::optional<Metrics> val;
    if (trainer.val_docs().size() > 0)
        val = evaluate(*final_model, trainer.val_docs(), o.train.eval_batch);
    if (finished && o.robustness)
        result.robustness = measure_robustness(*final_model, data, trainer.test_docs(), o.robust);

    // ---- records -----------------------------------------------------------------------------
    const double train_s = trainer.train_s();
    int64_t steps = 0, skipped = 0, nonfinite_skipped = 0;
    json epoch_s = json::array();
    for (const auto& r : result.history) {
        steps += r.steps;
        skipped += r.skipped_steps;
        nonfinite_skipped += r.nonfinite_skipped;
        epoch_s.push_back(r.time_s);
    }
    const int64_t epochs_done = trainer.epochs_done();
    json s = {{"program", "text_classifier"},
              {"dataset", data.corpus->kind},
              {"split", data.split_name},
              {"is_sample", data.is_sample()},
              {"model", o.train.model},
              {"tricks", describe_tricks(o.train)},
              {"train_docs", data.train.size()},
              {"val_docs", data.val.size()},
              {"test_docs", data.test.size()},
              {"vocab", data.vocab.size()},
              {"classes", static_cast<int64_t>(data.classes().size())},
              {"epochs", epochs_done},
              {"batch", o.train.batch},
              {"lr", o.train.lr},
              {"seed", o.train.seed},
              {"threads", minidl::get_num_threads()},
              {"device", trainer.device().str()},
              {"steps", steps},
              {"skipped_steps", skipped},
              {"on_nonfinite", o.train.on_nonfinite},
              {"nonfinite_skipped", nonfinite_skipped},
              {"data_s", data.data_s()},
              {"train_s", train_s},
              {"epoch_s", epoch_s},
              {"train_samples_per_s",
               train_s > 0 ? static_cast<double>(data.train.size() * epochs_done) / train_s : 0.0},
              {"step_ms", steps > 0 ? 1000.0 * train_s / static_cast<double>(steps) : 0.0},
              {"host_syncs_per_step", trainer.host_syncs_per_step()},
              {"test_loss", test.loss},
              {"test_accuracy", test.accuracy},
              {"test_macro_f1", test.macro_f1},
              {"interrupted", result.interrupted}};
    if (val) s["val_accuracy"] = val->accuracy;
    if (o.startup_s >= 0) s["startup_s"] = o.startup_s;
    if (result.robustness) s.update(to_json(*result.robustness));
    s["peak_rss_mb"] = peak_rss_mb();

    json hist = json::array(), curve = json::array();
    for (const auto& r : result.history)
        hist.push_back(to_json(r));
    for (const auto& [x, y] : result.loss_curve)
        curve.push_back({x, y});
    json record = {{"program", "text_classifier"},
                   {"record_version", 1},
                   {"config", to_json(o.train)},
                   {"tricks", describe_tricks(o.train)},
                   {"data", info},
                   {"epochs", hist},
                   {"loss_curve", curve},
                   {"final",
                    {{"weights", o.train.swa_start > 0 ? "swa"
                                 : o.train.ema > 0     ? "ema"
                                                       : "live"},
                     {"test_loss", test.loss},
                     {"test_accuracy", test.accuracy},
                     {"test_macro_f1", test.macro_f1}}},
                   {"summary", s}};
    if (val) record["final"]["val_accuracy"] = val->accuracy;
    if (result.robustness) record["robustness"] = to_json(*result.robustness);
    if (o.resume_dir) record["resumed_from"] = *o.resume_dir;
    if (o.init_from.size()) record["init_from"] = o.init_from;
    result.summary = s;
    result.record = record;

    if (writes) {
        // Weights and vocabulary only when the run is complete (a stopped run leaves its
        // checkpoint instead), and together, so that a failed or stopped run leaves no vocab.txt
        // that disagrees with an older model.safetensors in the same folder.
        if (finished) {
            data.vocab.save((fs::path(o.out_dir) / "vocab.txt").string());
            save_weights(*final_model, (fs::path(o.out_dir) / "model.safetensors").string());
            const fs::path config_path = fs::path(o.out_dir) / "config.json";
            if (final_model->kind() == ModelKind::Transformer) {
                write_file_atomic(
                    config_path.string(),
                    bert_config_json(final_model->config(), data.classes(), o.train.max_len)
                            .dump(2) +
                        "\n");
            } else {
                fs::remove(config_path);  // a transformer's, from an earlier run in this folder
            }
        }
        write_file_atomic((fs::path(o.out_dir) / "run.json").string(), record.dump(2) + "\n");
    }
    // A checked wait for the device before reporting success: a fault in the last kernels queued
    // would otherwise surface nowhere (the process exits without waiting for them).
    if (trainer.device().is_cuda()) minidl::cuda::synchronize(trainer.device().index);
    return result;
}

// ---- prediction -------------------------------------------------------------------------------

Predictor::Predictor(const std::string& model_dir) {
    const fs::path dir(model_dir);
    const std::string run_path = (dir / "run.json").string();
    json record;
    try {
        record = json::parse(read_file(run_path));
    } catch (const json::exception& e) {
        throw minidl::FormatError(minidl::detail::concat("predict: ", run_path, ": ", e.what()));
    }
    MDL_CHECK(record.contains("data") && record["data"].contains("classes"), minidl::FormatError,
              "predict: ", run_path, ": no data.classes (not a text_classifier run record)");
    classes_ = record["data"]["classes"].get<std::vector<std::string>>();
    mode_ = parse_mode(record["data"].value("mode", std::string("plain")), run_path);
    vocab_ = Vocab::load((dir / "vocab.txt").string());
    const std::string weights = (dir / "model.safetensors").string();
    // config.json (Hugging Face's BertConfig) marks the transformer; the bag model has none.
    const fs::path config_path = dir / "config.json";
    ModelConfig mc;
    if (fs::exists(config_path)) {
        const BertConfigFile file = read_bert_config(config_path.string());
        mc = file.config;
        format_ = {.bert = true, .max_len = file.max_len};
        MDL_CHECK(vocab_.is_bert(), minidl::FormatError, "predict: ", model_dir,
                  ": config.json describes a transformer but vocab.txt does not start with ",
                  "BERT's specials");
        MDL_CHECK(file.classes == classes_, minidl::FormatError, "predict: ", model_dir,
                  ": config.json's id2label and run.json's classes differ");
    } else {
        mc = infer_model_config(weights);
    }
    MDL_CHECK(mc.vocab == vocab_.size() && mc.classes == static_cast<int64_t>(classes_.size()),
              minidl::FormatError, "predict: ", model_dir, ": model.safetensors has vocabulary ",
              mc.vocab, " and ", mc.classes, " classes, but vocab.txt has ", vocab_.size(),
              " entries and run.json ", classes_.size(), " classes");
    minidl::nn::init::SkipRandomInitGuard no_draws;  // the weights are loaded next
    model_ = make_model(mc);
    load_weights(*model_, weights);
    model_->eval();
}

std::vector<Predictor::Prediction> Predictor::predict(const std::vector<std::string>& docs) const {
    if (docs.empty()) return {};
    EncodedDocs encoded;
    encoded.offsets.push_back(0);
    for (const std::string& d : docs) {
        const std::vector<int64_t> e = vocab_.encode(tokenize_document(d, mode_), format_);
        encoded.ids.insert(encoded.ids.end(), e.begin(), e.end());
        encoded.offsets.push_back(static_cast<int64_t>(encoded.ids.size()));
        encoded.labels.push_back(0);
    }
    const int64_t B = static_cast<int64_t>(docs.size());
    minidl::NoGradGuard no_grad;
    const Tensor logits = predict_logits(
        *model_, to_doc_tensors(encoded, minidl::Device::cpu(),
                                static_cast<int64_t>(classes_.size()), format_.bert));
    const std::vector<float> v = logits.to_vector<float>();
    const int64_t K = static_cast<int64_t>(classes_.size());
    std::vector<Prediction> out(docs.size());
    for (int64_t b = 0; b < B; ++b) {
        Prediction& p = out[b];
        p.logits.assign(v.begin() + b * K, v.begin() + (b + 1) * K);
        const float mx = *std::max_element(p.logits.begin(), p.logits.end());
        double z = 0;
        for (float l : p.logits)
            z += std::exp(static_cast<double>(l - mx));
        for (float l : p.logits)
            p.probabilities.push_back(std::exp(static_cast<double>(l - mx)) / z);
        p.label = std::max_element(p.logits.begin(), p.logits.end()) - p.logits.begin();
        p.name = classes_[p.label];
    }
    return out;
}

Predictor::Prediction Predictor::predict(std::string_view document) const {
    return predict(std::vector<std::string>{std::string(document)}).front();
}

}  // namespace textclf
