// examples/text_classifier/train_config.cpp — the training configuration (train.h's TrainConfig,
// EpochRecord): validation, the model and input format it implies, its JSON form (run.json, the
// checkpoint's config) and its one-line description.
#include <cmath>
#include <sstream>

#include "core/backend.h"
#include "core/check.h"
#include "examples/text_classifier/train.h"

namespace textclf {

using minidl::Device;
using minidl::ValueError;
using json = nlohmann::json;

// ---- configuration ----------------------------------------------------------------------------

void validate(const TrainConfig& c) {
    MDL_CHECK(c.epochs >= 1, ValueError, "--epochs must be at least 1, got ", c.epochs);
    MDL_CHECK(c.batch >= 1, ValueError, "--batch must be at least 1, got ", c.batch);
    MDL_CHECK(c.lr > 0 && std::isfinite(c.lr), ValueError, "--lr must be positive, got ", c.lr);
    MDL_CHECK(c.accum >= 1 && c.accum <= c.batch, ValueError,
              "--accum must be in [1, --batch = ", c.batch, "], got ", c.accum);
    MDL_CHECK(c.fgm >= 0, ValueError, "--fgm EPS must be non-negative, got ", c.fgm);
    const int adversaries = (c.fgm > 0) + c.pgd + c.freelb + c.awp;
    MDL_CHECK(adversaries <= 1, ValueError,
              "--fgm, --pgd, --freelb and --awp are alternatives: choose one, got ", adversaries);
    MDL_CHECK(c.ema >= 0 && c.ema < 1, ValueError, "--ema DECAY must be in [0, 1), got ", c.ema);
    MDL_CHECK(c.swa_start >= 0 && c.swa_start <= c.epochs, ValueError,
              "--swa-start must be in [1, --epochs = ", c.epochs, "] (0 = off), got ", c.swa_start);
    MDL_CHECK(!c.swa_lr || *c.swa_lr >= 0, ValueError, "--swa-lr must be non-negative");
    MDL_CHECK(c.amp.empty() || c.amp == "f16" || c.amp == "bf16", ValueError,
              "--amp must be f16 or bf16, got '", c.amp, "'");
    MDL_CHECK(c.clip >= 0, ValueError, "--clip must be non-negative, got ", c.clip);
    MDL_CHECK(c.eval_batch >= 1, ValueError, "eval batch must be positive");
    MDL_CHECK(c.dim >= 1 && c.hidden >= 1, ValueError, "--dim and --hidden must be positive");
    MDL_CHECK(c.replicas >= 1 && c.replicas <= c.batch, ValueError,
              "--replicas must be in [1, --batch = ", c.batch, "], got ", c.replicas);
    MDL_CHECK(c.replicas == 1 || !c.distributed, ValueError,
              "--replicas and --distributed are alternatives: choose one");
    MDL_CHECK(c.on_nonfinite == "stop" || c.on_nonfinite == "skip", ValueError,
              "--on-nonfinite must be stop or skip, got '", c.on_nonfinite, "'");
    const ModelKind kind = parse_model_kind(c.model);
    if (kind == ModelKind::Transformer) {
        MDL_CHECK(c.layers >= 1 && c.heads >= 1 && c.intermediate >= 1, ValueError,
                  "--layers, --heads and --intermediate must be positive, got ", c.layers, ", ",
                  c.heads, ", ", c.intermediate);
        MDL_CHECK(c.hidden % c.heads == 0, ValueError, "--hidden ", c.hidden,
                  " must be a multiple of --heads ", c.heads);
        MDL_CHECK(c.max_len >= 2 && c.max_len <= 512, ValueError,
                  "--max-len must be in [2, 512] ([CLS] and [SEP] included; 512 positions), got ",
                  c.max_len);
        MDL_CHECK(c.warmup >= 0 && c.warmup <= 1, ValueError,
                  "--warmup must be a fraction of the steps in [0, 1], got ", c.warmup);
        MDL_CHECK(c.weight_decay >= 0, ValueError, "--weight-decay must be non-negative, got ",
                  c.weight_decay);
    } else {
        MDL_CHECK(!c.checkpoint_activations, ValueError,
                  "--checkpoint-activations needs --model transformer (the bag model keeps no "
                  "activations worth recomputing)");
    }
}

ModelConfig model_config(const TrainConfig& c, int64_t vocab, int64_t classes) {
    ModelConfig m;
    m.kind = parse_model_kind(c.model);
    m.vocab = vocab;
    m.dim = c.dim;
    m.hidden = c.hidden;
    m.classes = classes;
    m.layers = c.layers;
    m.heads = c.heads;
    m.intermediate = c.intermediate;
    m.checkpoint_activations = c.checkpoint_activations;
    return m;
}

InputFormat input_format(const TrainConfig& c) {
    return {.bert = parse_model_kind(c.model) == ModelKind::Transformer, .max_len = c.max_len};
}

json to_json(const TrainConfig& c) {
    json j = {{"epochs", c.epochs},
              {"batch", c.batch},
              {"lr", c.lr},
              {"seed", c.seed},
              {"device", c.device},
              {"model", c.model},
              {"layers", c.layers},
              {"heads", c.heads},
              {"intermediate", c.intermediate},
              {"max_len", c.max_len},
              {"warmup", c.warmup},
              {"weight_decay", c.weight_decay},
              {"checkpoint_activations", c.checkpoint_activations},
              {"dim", c.dim},
              {"hidden", c.hidden},
              {"fgm", c.fgm},
              {"pgd", c.pgd},
              {"pgd_eps", c.pgd_eps},
              {"pgd_alpha", c.pgd_alpha},
              {"pgd_steps", c.pgd_steps},
              {"freelb", c.freelb},
              {"freelb_steps", c.freelb_steps},
              {"freelb_lr", c.freelb_lr},
              {"freelb_init", c.freelb_init},
              {"freelb_max_norm", c.freelb_max_norm},
              {"awp", c.awp},
              {"awp_lr", c.awp_lr},
              {"awp_eps", c.awp_eps},
              {"ema", c.ema},
              {"ema_warmup", c.ema_warmup},
              {"swa_start", c.swa_start},
              {"amp", c.amp},
              {"accum", c.accum},
              {"clip", c.clip},
              {"replicas", c.replicas},
              {"distributed", c.distributed},
              {"eval_batch", c.eval_batch},
              {"on_nonfinite", c.on_nonfinite}};
    j["swa_lr"] = c.swa_lr ? json(*c.swa_lr) : json(nullptr);
    return j;
}

TrainConfig train_config_from_json(const json& j) {
    TrainConfig c;
    // Each key is optional: a record from an older version gets today's defaults.
    auto get = [&](const char* key, auto& field) {
        if (j.contains(key) && !j[key].is_null())
            field = j[key].get<std::decay_t<decltype(field)>>();
    };
    get("epochs", c.epochs);
    get("batch", c.batch);
    get("lr", c.lr);
    get("seed", c.seed);
    get("device", c.device);
    get("model", c.model);
    get("layers", c.layers);
    get("heads", c.heads);
    get("intermediate", c.intermediate);
    get("max_len", c.max_len);
    get("warmup", c.warmup);
    get("weight_decay", c.weight_decay);
    get("checkpoint_activations", c.checkpoint_activations);
    get("dim", c.dim);
    get("hidden", c.hidden);
    get("fgm", c.fgm);
    get("pgd", c.pgd);
    get("pgd_eps", c.pgd_eps);
    get("pgd_alpha", c.pgd_alpha);
    get("pgd_steps", c.pgd_steps);
    get("freelb", c.freelb);
    get("freelb_steps", c.freelb_steps);
    get("freelb_lr", c.freelb_lr);
    get("freelb_init", c.freelb_init);
    get("freelb_max_norm", c.freelb_max_norm);
    get("awp", c.awp);
    get("awp_lr", c.awp_lr);
    get("awp_eps", c.awp_eps);
    get("ema", c.ema);
    get("ema_warmup", c.ema_warmup);
    get("swa_start", c.swa_start);
    get("amp", c.amp);
    get("accum", c.accum);
    get("clip", c.clip);
    get("replicas", c.replicas);
    get("distributed", c.distributed);
    get("eval_batch", c.eval_batch);
    get("on_nonfinite", c.on_nonfinite);
    if (j.contains("swa_lr") && !j["swa_lr"].is_null()) c.swa_lr = j["swa_lr"].get<double>();
    return c;
}

std::string describe_tricks(const TrainConfig& c) {
    std::vector<std::string> parts;
    auto num = [](double v) {
        std::ostringstream os;
        os << v;
        return os.str();
    };
    if (c.fgm > 0) parts.push_back("fgm(eps=" + num(c.fgm) + ")");
    if (c.pgd) parts.push_back("pgd(eps=" + num(c.pgd_eps) + ",K=" + num(c.pgd_steps) + ")");
    if (c.freelb) parts.push_back("freelb(K=" + num(c.freelb_steps) + ")");
    if (c.awp) parts.push_back("awp(lr=" + num(c.awp_lr) + ")");
    if (c.ema > 0) parts.push_back("ema(" + num(c.ema) + (c.ema_warmup ? ",warmup)" : ")"));
    if (c.swa_start > 0) parts.push_back("swa(from " + num(c.swa_start) + ")");
    if (!c.amp.empty()) parts.push_back("amp(" + c.amp + ")");
    if (c.accum > 1) parts.push_back("accum(" + num(c.accum) + ")");
    if (c.clip > 0) parts.push_back("clip(" + num(c.clip) + ")");
    if (c.checkpoint_activations) parts.push_back("checkpoint");
    if (parts.empty()) return "baseline";
    std::string out = parts[0];
    for (size_t i = 1; i < parts.size(); ++i)
        out += "+" + parts[i];
    return out;
}

Device resolve_device(const std::string& name) {
    const Device d = Device::parse(name);
    if (d.is_cuda()) {
        MDL_CHECK(minidl::cuda::built_with_cuda(), minidl::DeviceError, "--device ", name,
                  ": this text_classifier was built without CUDA; configure with "
                  "-DMINIDL_CUDA=ON (or use --device cpu)");
        MDL_CHECK(d.index < minidl::cuda::device_count(), minidl::DeviceError, "--device ", name,
                  ": no usable CUDA device (found ", minidl::cuda::device_count(), ")");
    }
    return d;
}

json to_json(const EpochRecord& r) {
    json j = {{"epoch", r.epoch},
              {"loss", r.loss},
              {"time_s", r.time_s},
              {"samples_per_s", r.samples_per_s},
              {"steps", r.steps},
              {"skipped_steps", r.skipped_steps},
              {"nonfinite_skipped", r.nonfinite_skipped},
              {"lr", r.lr},
              {"test_loss", r.test_loss},
              {"test_accuracy", r.test_accuracy},
              {"test_macro_f1", r.test_macro_f1}};
    if (r.val_accuracy) j["val_accuracy"] = *r.val_accuracy;
    return j;
}

EpochRecord epoch_record_from_json(const json& j) {
    EpochRecord r;
    r.epoch = j.at("epoch").get<int64_t>();
    r.loss = j.at("loss").get<double>();
    r.time_s = j.at("time_s").get<double>();
    r.samples_per_s = j.at("samples_per_s").get<double>();
    r.steps = j.at("steps").get<int64_t>();
    r.skipped_steps = j.at("skipped_steps").get<int64_t>();
    r.nonfinite_skipped = j.value("nonfinite_skipped", int64_t{0});  // absent in older records
    r.lr = j.at("lr").get<double>();
    r.test_loss = j.at("test_loss").get<double>();
    r.test_accuracy = j.at("test_accuracy").get<double>();
    r.test_macro_f1 = j.at("test_macro_f1").get<double>();
    if (j.contains("val_accuracy")) r.val_accuracy = j["val_accuracy"].get<double>();
    return r;
}

}  // namespace textclf
