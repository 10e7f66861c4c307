// examples/text_classifier/run.h — one training run end to end (the program's default command),
// and prediction with a saved model (its predict command).
//
// run_training: data (loaded, or shared by the caller) -> Trainer -> outputs in --out DIR:
//   model.safetensors       the evaluation weights only (SWA average / EMA shadow / live), PyTorch
//                           names; loads into bench/torch_text_classifier.py's Model
//   vocab.txt               line k = token of id k - 1 (text.h Vocab::save)
//   config.json             the transformer's: Hugging Face's BertConfig keys (model.h); with
//                           model.safetensors and vocab.txt all another program needs
//   run.json                the run record: config, data, per-epoch records, loss curve, final
//                           metrics, robustness figures, timings, and the summary line
//   checkpoint.safetensors  the whole training state (checkpoint.h), after every epoch and when
//                           stopped; --resume DIR continues from it exactly
// The summary (what --json prints as one line) holds at least train_docs, test_docs, vocab,
// epochs, batch, threads, train_s, train_samples_per_s, test_accuracy, test_macro_f1, data_s,
// startup_s, peak_rss_mb, and with --robustness attack_accuracy {epsilon: accuracy},
// noisy_accuracy {p: accuracy} and flatness.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/robustness.h"
#include "examples/text_classifier/train.h"

namespace textclf {

struct RunOptions {
    TrainConfig train;
    DataConfig data;
    std::string out_dir;                    // "" = write no files
    std::optional<std::string> resume_dir;  // continue the run saved there
    std::optional<std::string> device;      // with resume: overrides the saved device
    std::string init_from;                  // initial weights (a model.safetensors)
    bool robustness = false;
    RobustnessOptions robust;
    int threads = 0;  // 0: leave the thread pool as it is
    bool progress = true;
    std::string progress_prefix;
    bool write_checkpoints = true;
    double startup_s = -1;              // process start -> ready to read data (main measures)
    std::function<bool()> should_stop;  // polled before every step (Ctrl-C)
    std::function<minidl::Tensor(const minidl::Tensor&)> map_loss;  // TrainHooks::map_loss
};

struct RunResult {
    nlohmann::json summary;  // the --json line
    nlohmann::json record;   // run.json
    bool interrupted = false;
    std::vector<EpochRecord> history;
    std::vector<std::pair<double, double>> loss_curve;
    std::optional<RobustnessResult> robustness;
};

// Runs one training (see the top of this file). `prepared`, when given, is used instead of
// loading options.data (compare shares one tokenized corpus between runs); it must outlive the
// call. Throws minidl::Error subclasses for bad flags, data or checkpoints.
RunResult run_training(const RunOptions& options, const PreparedData* prepared = nullptr);

// Sizes the thread pool for --threads N (0: leave it as it is). Throws ValueError naming
// "--threads N" when N is negative or the system cannot start N threads.
void apply_threads_flag(int threads);

// What run.json says about the data, also stored in checkpoints.
nlohmann::json data_info(const DataConfig& config, const PreparedData& data);

// Peak resident set size of this process in MiB (getrusage).
double peak_rss_mb();

// A saved model (run_training's --out DIR): run.json for the classes and the text mode,
// vocab.txt, model.safetensors.
class Predictor {
  public:
    explicit Predictor(const std::string& model_dir);

    struct Prediction {
        int64_t label = 0;
        std::string name;
        std::vector<double> probabilities;  // softmax of the logits, one per class
        std::vector<float> logits;
    };
    // One raw document (an e-mail message when the model was trained on e-mail).
    Prediction predict(std::string_view document) const;
    std::vector<Prediction> predict(const std::vector<std::string>& documents) const;

    const std::vector<std::string>& classes() const { return classes_; }
    TextMode mode() const { return mode_; }
    const Vocab& vocab() const { return vocab_; }

  private:
    std::vector<std::string> classes_;
    TextMode mode_ = TextMode::Plain;
    InputFormat format_;
    Vocab vocab_;
    std::shared_ptr<TextClassifier> model_;
};

}  // namespace textclf
