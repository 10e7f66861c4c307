// examples/text_classifier/progress.h — the per-epoch progress display on stderr.
//
// On a terminal (isatty(stderr)) a bar redrawn in place at most 10 times a second:
//   epoch 2/5 [###########---------] 2464/4926  5321 samples/s  loss 0.0913  ETA 0.5s
// ending with the epoch's summary line; anywhere else (a log file, a pipe, CI) only the summary
// line per epoch, so logs stay readable:
//   epoch 2/5  loss 0.0913  4926 samples in 0.93 s (5321 samples/s)  test acc 0.9812
// ETA = remaining samples / the epoch's samples per second so far.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace textclf {

struct EpochRecord;

class ProgressBar {
  public:
    // `out` is where it writes (stderr in the program); `terminal` chooses the bar. A prefix
    // ("fgm seed 1") starts every line.
    ProgressBar(std::ostream& out, bool terminal, std::string prefix = "");
    // Whether stderr is a terminal.
    static bool stderr_is_terminal();

    void begin_epoch(int64_t epoch, int64_t epochs, int64_t total_samples, int64_t done_samples);
    void update(int64_t done_samples, double mean_loss, double elapsed_s);
    void end_epoch(const EpochRecord& record);

  private:
    std::ostream& out_;
    bool terminal_;
    std::string prefix_;
    int64_t epoch_ = 0, epochs_ = 0, total_ = 0;
    std::chrono::steady_clock::time_point last_draw_{};
    bool drawn_ = false;
};

}  // namespace textclf
