// examples/text_classifier/checkpoint.h — checkpoint.safetensors: the whole training state of a
// run, in one safetensors file (core/safetensors.h), written atomically.
//
// Tensors (all saved from the host, so a checkpoint written on a GPU loads on a CPU):
//   model.*          the live weights (embedding.weight, fc1.*, fc2.*; the transformer's
//                    Hugging Face names, bert.embeddings.word_embeddings.weight, ...)
//   optimizer.*      Adam's (the transformer's: AdamW's) moments per parameter
//   ema.shadow.*     the EMA shadow (--ema)
//   swa.module.*     the SWA average (--swa-start)
// Metadata (string -> string):
//   format = "minidl.text_classifier.checkpoint", version = "1"
//   config           the TrainConfig as JSON (train.h)
//   run              what the run trains on: data config, split, vocabulary size, classes
//   position.*       epochs done, next batch of the current epoch, global step
//   rng.*            seed and counter offset of the default, data, epoch-start and FreeLB
//                    generators (the data position: the epoch's order is redrawn from rng.epoch;
//                    rng.freelb is replica 0's, rng.freelb.R replica R's under --replicas)
//   epoch.*, curve.*, history   the current epoch's partial sums and the finished epochs
//   optimizer.*, ema.*, swa.*, swa_lr.*, scaler.*, schedule.*   each part's counters (exact
//                    decimal text; schedule: the transformer's warm-up and decay)
// A reader checks format and version first and refuses other versions with a FormatError.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/state_dict.h"
#include "examples/text_classifier/train.h"

namespace textclf {

inline constexpr const char* kCheckpointFormat = "minidl.text_classifier.checkpoint";
inline constexpr int kCheckpointVersion = 1;
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";

// Writes `trainer`'s state plus `run_info` (any JSON object describing the data) to `path`,
// atomically (temporary file + rename): an interrupted write never leaves a broken checkpoint.
// Throws NonFiniteError naming the tensor, writing nothing, when a tensor holds a NaN or an inf.
void save_checkpoint(const std::string& path, const Trainer& trainer,
                     const nlohmann::json& run_info);

struct Checkpoint {
    minidl::StateDict state;  // on the host
    TrainConfig config;
    nlohmann::json run_info;
};

// Reads and validates a checkpoint (format, version, config); FormatError otherwise.
Checkpoint load_checkpoint(const std::string& path);

// Removes from `dir` the temporary files that killed processes left: this program writes every
// output atomically through `<file>.tmp.<pid>.<n>` (save_safetensors, write_file_atomic), and a
// process killed mid-write leaves that file behind. Only those whose writer <pid> is no longer
// running are removed (a live writer's is not touched); returns how many. Never reads them: the
// file they were meant to replace is still the last complete one.
int remove_abandoned_temp_files(const std::string& dir);

}  // namespace textclf
