// examples/text_classifier/progress.cpp — see progress.h.
#include "examples/text_classifier/progress.h"

#include <unistd.h>

#include <cstdio>
#include <ostream>

#include "examples/text_classifier/train.h"

namespace textclf {

namespace {

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
    char buf[128];
    std::snprintf(buf, sizeof buf, fmt, a, b, c);
    return buf;
}

}  // namespace

ProgressBar::ProgressBar(std::ostream& out, bool terminal, std::string prefix)
    : out_(out), terminal_(terminal), prefix_(prefix.empty() ? "" : prefix + ": ") {}

bool ProgressBar::stderr_is_terminal() {
    return ::isatty(STDERR_FILENO) == 1;
}

void ProgressBar::begin_epoch(int64_t epoch, int64_t epochs, int64_t total_samples,
                              int64_t done_samples) {
    epoch_ = epoch;
    epochs_ = epochs;
    total_ = total_samples;
    drawn_ = false;
    (void)done_samples;
}

void ProgressBar::update(int64_t done, double mean_loss, double elapsed_s) {
    if (!terminal_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    drawn_ = true;
    constexpr int kWidth = 24;
    const double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1;
    const int filled = static_cast<int>(frac * kWidth);
    const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
    out_ << '\r' << prefix_ << "epoch " << epoch_ << '/' << epochs_ << " ["
         << std::string(filled, '#') << std::string(kWidth - filled, '-') << "] " << done << '/'
         << total_ << format("  %.0f samples/s  loss %.4f  ETA %.1fs ", rate, mean_loss, eta)
         << "\x1b[K" << std::flush;  // erase what a longer previous line left
}

void ProgressBar::end_epoch(const EpochRecord& r) {
    if (terminal_ && drawn_) out_ << "\r\x1b[K";
    out_ << prefix_ << "epoch " << r.epoch << '/' << epochs_
         << format("  loss %.4f  %.0f samples in %.2f s", r.loss, r.samples_per_s * r.time_s,
                   r.time_s)
         << format(" (%.0f samples/s)  test acc %.4f", r.samples_per_s, r.test_accuracy);
    if (r.val_accuracy) out_ << format("  val acc %.4f", *r.val_accuracy);
    if (r.skipped_steps > 0) out_ << "  skipped steps " << r.skipped_steps;
    out_ << std::endl;
}

}  // namespace textclf
