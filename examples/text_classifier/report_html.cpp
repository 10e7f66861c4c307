// examples/text_classifier/report_html.cpp — report.html: the compare table and its plots as
// one self-contained page (inline CSS, inline SVG; no script, no font or network request), so it
// opens anywhere, offline, and prints. scripts/check_report_html.sh renders it in headless
// Chromium.
//
// Plots (each series is one trick, the mean over seeds):
//   training loss vs epoch (in-distribution split; log scale: the loss falls by decades)
//   accuracy vs attack epsilon (epsilon 0 = clean)
//   accuracy vs token-noise probability p (p 0 = clean)
//   test accuracy after each epoch under the temporal shift (when that split ran)
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "examples/text_classifier/report.h"

namespace textclf {

using json = nlohmann::json;

namespace {

// Tableau's 10 colours: distinguishable, and readable in grey print order.
constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string esc(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string num(double v) {
    std::ostringstream os;
    os.precision(4);
    os << v;
    return os.str();
}

struct Series {
    std::string name, color;
    std::vector<std::pair<double, double>> points;
};

// Ticks at 1, 2 or 5 times a power of ten, about `target` of them over [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
    const double range = hi - lo;
    if (!(range > 0)) return {lo};
    const double raw = range / target;
    const double p10 = std::pow(10.0, std::floor(std::log10(raw)));
    double step = p10;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p10 >= raw) {
            step = m * p10;
            break;
        }
    std::vector<double> t;
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
        t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    return t;
}

// A line chart with axes, ticks, grid and a legend on the right.
std::string line_chart(const std::string& title, const std::vector<Series>& series,
                       const std::string& xlabel, const std::string& ylabel, bool log_y) {
    constexpr double W = 620, H = 340, L = 62, R = 150, T = 34, B = 48;
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    for (const auto& s : series)
        for (const auto& [x, y] : s.points) {
            if (!std::isfinite(x) || !std::isfinite(y) || (log_y && y <= 0)) continue;
            x0 = std::min(x0, x);
            x1 = std::max(x1, x);
            y0 = std::min(y0, y);
            y1 = std::max(y1, y);
        }
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" viewBox=\"0 0 " << W << " " << H << "\" role=\"img\" aria-label=\"" << esc(title)
      << "\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
      << "<text x=\"" << W / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" "
      << "font-weight=\"bold\">" << esc(title) << "</text>\n";
    if (!std::isfinite(x0)) return o.str() + "<text x=\"50%\" y=\"50%\">no data</text></svg>\n";
    if (x1 == x0) x1 = x0 + 1;
    auto fy = [&](double y) { return log_y ? std::log10(y) : y; };
    double ly0 = fy(y0), ly1 = fy(y1);
    if (ly1 - ly0 < 1e-9) {
        ly0 -= 0.5;
        ly1 += 0.5;
    }
    const double pad = (ly1 - ly0) * 0.05;
    ly0 -= pad;
    ly1 += pad;
    auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    auto py = [&](double y) { return T + (ly1 - fy(y)) / (ly1 - ly0) * (H - T - B); };
    // Grid and ticks.
    o << "<g font-size=\"11\" fill=\"#333\">\n";
    for (double x : nice_ticks(x0, x1))
        o << "<line x1=\"" << px(x) << "\" y1=\"" << T << "\" x2=\"" << px(x) << "\" y2=\"" << H - B
          << "\" stroke=\"#e5e5e5\"/><text x=\"" << px(x) << "\" y=\"" << H - B + 15
          << "\" text-anchor=\"middle\">" << num(x) << "</text>\n";
    std::vector<double> yt;
    if (log_y) {
        for (int k = static_cast<int>(std::floor(ly0)); k <= static_cast<int>(std::ceil(ly1)); ++k)
            for (double m : {1.0, 2.0, 5.0}) {
                const double v = m * std::pow(10.0, k);
                if (std::log10(v) >= ly0 && std::log10(v) <= ly1) yt.push_back(v);
            }
        // Within less than a decade the 1-2-5 ticks may miss the range: label evenly instead.
        if (yt.size() < 3) {
            yt.clear();
            for (double v : nice_ticks(std::pow(10.0, ly0), std::pow(10.0, ly1)))
                if (v > 0) yt.push_back(v);
        }
    } else {
        yt = nice_ticks(ly0, ly1);
    }
    for (double y : yt)
        o << "<line x1=\"" << L << "\" y1=\"" << py(y) << "\" x2=\"" << W - R << "\" y2=\"" << py(y)
          << "\" stroke=\"#e5e5e5\"/><text x=\"" << L - 6 << "\" y=\"" << py(y) + 4
          << "\" text-anchor=\"end\">" << num(y) << "</text>\n";
    o << "</g>\n<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\""
      << H - T - B << "\" fill=\"none\" stroke=\"#888\"/>\n";
    o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10
      << "\" text-anchor=\"middle\" font-size=\"12\">" << esc(xlabel) << "</text>\n";
    o << "<text transform=\"translate(16," << (T + H - B) / 2
      << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">" << esc(ylabel) << "</text>\n";
    // Lines, markers and legend.
    for (size_t i = 0; i < series.size(); ++i) {
        const Series& s = series[i];
        std::ostringstream pts;
        for (const auto& [x, y] : s.points)
            if (std::isfinite(y) && (!log_y || y > 0)) pts << px(x) << "," << py(y) << " ";
        o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.8\" points=\""
          << pts.str() << "\"><title>" << esc(s.name) << "</title></polyline>\n";
        if (s.points.size() <= 12)
            for (const auto& [x, y] : s.points)
                if (std::isfinite(y) && (!log_y || y > 0))
                    o << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"2.8\" fill=\""
                      << s.color << "\"/>\n";
        const double ly = T + 8 + 18.0 * static_cast<double>(i);
        o << "<line x1=\"" << W - R + 12 << "\" y1=\"" << ly << "\" x2=\"" << W - R + 34
          << "\" y2=\"" << ly << "\" stroke=\"" << s.color << "\" stroke-width=\"2.5\"/>"
          << "<text x=\"" << W - R + 40 << "\" y=\"" << ly + 4 << "\" font-size=\"12\">"
          << esc(s.name) << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
}

// Pointwise mean over seeds of per-run point lists (runs of one trick share their x values).
std::vector<std::pair<double, double>> mean_points(
    const CompareResult& r, const std::string& trick, const std::string& split,
    const std::function<std::vector<std::pair<double, double>>(const CompareRun&)>& get) {
    std::map<double, std::pair<double, int>> acc;
    for (const auto& run : r.runs)
        if (run.trick == trick && run.split == split)
            for (const auto& [x, y] : get(run)) {
                auto& a = acc[x];
                a.first += y;
                a.second += 1;
            }
    std::vector<std::pair<double, double>> out;
    for (const auto& [x, a] : acc)
        out.emplace_back(x, a.first / a.second);
    return out;
}

}  // namespace

std::string report_html(const CompareResult& r) {
    const std::string in_dist = r.splits.empty() ? "random" : r.splits.front();
    auto series_for = [&](const std::string& split, const auto& get) {
        std::vector<Series> out;
        for (size_t i = 0; i < r.tricks.size(); ++i)
            out.push_back({r.tricks[i], kPalette[i % 10], mean_points(r, r.tricks[i], split, get)});
        return out;
    };
    const auto loss =
        series_for(in_dist, [](const CompareRun& run) { return run.result.loss_curve; });
    const auto attack = series_for(in_dist, [](const CompareRun& run) {
        return run.result.robustness ? run.result.robustness->attack
                                     : std::vector<std::pair<double, double>>{};
    });
    const auto noisy = series_for(in_dist, [](const CompareRun& run) {
        std::vector<std::pair<double, double>> pts = {
            {0.0, run.result.summary["test_accuracy"].get<double>()}};
        if (run.result.robustness)
            for (const auto& p : run.result.robustness->noisy)
                pts.push_back(p);
        return pts;
    });

    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      << "<title>text_classifier: tricks compared</title>\n<style>\n"
      << "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;"
         "color:#222}\n"
      << "table{border-collapse:collapse;font-size:12px;margin:12px 0}\n"
      << "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}\n"
      << "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\n"
      << ".plots{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:13px;"
         "max-width:1000px}\n"
      << ".warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px;display:inline-block}\n"
      << "</style></head><body>\n<h1>text_classifier: every trick on the same data</h1>\n";
    if (r.is_sample)
        h << "<p class=\"warn\">Run on the committed offline sample, not the full corpus: these "
             "figures are a smoke test only.</p>\n";
    h << "<p class=\"note\">" << esc(report_caption(r)) << "</p>\n";
    const TableData t = build_table(r);
    h << "<table>\n<tr>";
    for (const auto& c : t.header)
        h << "<th>" << esc(c) << "</th>";
    h << "</tr>\n";
    for (const auto& row : t.rows) {
        h << "<tr>";
        for (const auto& c : row)
            h << "<td>" << esc(c) << "</td>";
        h << "</tr>\n";
    }
    h << "</table>\n<div class=\"plots\">\n";
    h << line_chart("Training loss (" + in_dist + " split)", loss, "epoch",
                    "mean training loss (log scale)", true);
    h << line_chart("Accuracy under the embedding attack", attack, "attack radius ε",
                    "test accuracy", false);
    h << line_chart("Accuracy on noisy text", noisy, "token edit probability p", "test accuracy",
                    false);
    if (std::find(r.splits.begin(), r.splits.end(), "temporal") != r.splits.end()) {
        const auto temporal = series_for("temporal", [](const CompareRun& run) {
            std::vector<std::pair<double, double>> pts;
            for (const auto& e : run.result.history)
                pts.emplace_back(static_cast<double>(e.epoch), e.test_accuracy);
            return pts;
        });
        h << line_chart("Accuracy under temporal shift, per epoch", temporal, "epoch",
                        "test accuracy (later mail)", false);
    }
    h << "</div>\n<p class=\"note\">Wall time " << fmt_fixed(r.wall_s, 1)
      << " s. Each run's record: runs/&lt;trick&gt;-&lt;split&gt;-s&lt;seed&gt;/run.json. "
         "Generated by text_classifier compare.</p>\n</body></html>\n";
    return h.str();
}

}  // namespace textclf
