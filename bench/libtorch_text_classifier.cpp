// bench/libtorch_text_classifier.cpp — the example's bag model written with PyTorch's C++ API
// (libtorch 1.13, Debian's libtorch-dev), a peer in bench/compare_peers.sh.
//
// It is bench/torch_text_classifier.py line for line, in C++:
//   model  = EmbeddingBag(V, 64, mean) -> Linear(64, 64) -> ReLU -> Linear(64, 2)
//   init   = torch::manual_seed(seed), then the three modules' own defaults constructed in the
//            script's order (EmbeddingBag: N(0, 1); Linear: kaiming_uniform_(a = sqrt 5), bias
//            U(-1/sqrt(in), 1/sqrt(in))). libtorch's C++ modules call the same init functions on
//            the same generator, so the initial weights are the script's bit for bit;
//            --init-checksum prints them reduced, as `peers_text_classifier.py init-checksum`
//            does in Python, and compare_peers.sh checks that the two agree.
//   order  = each epoch torch::randperm(N) on that generator, batches of 32 in that order
//   train  = Adam(lr 1e-3, betas (0.9, 0.999), eps 1e-8), cross-entropy (mean), 5 epochs
//   eval   = the test side in batches of 256, argmax
// Input: the ids that `bench/peers_text_classifier.py export` writes (the script's own corpus,
// split, tokens and vocabulary): a line "V N", then per document "label id id ...".
// Output: one JSON line (timings, peak RSS) and, with --pred, one "__label__ham|spam" a line,
// scored by `peers_text_classifier.py score` (the script's macro_f1).
//
// Built by compare_peers.sh, not by CMake:
//   g++ -std=c++17 -O2 -I/usr/include/torch/csrc/api/include
//       bench/libtorch_text_classifier.cpp -ltorch -ltorch_cpu -lc10
//       -o build-peers/libtorch_text_classifier
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Docs {
    int64_t vocab = 0;
    std::vector<torch::Tensor> ids;  // one int64 tensor per document
    std::vector<int64_t> labels;
};

Docs read_ids(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    Docs d;
    int64_t n = 0;
    std::string line;
    if (!std::getline(in, line) || !(std::istringstream(line) >> d.vocab >> n))
        throw std::runtime_error(path + ": expected a first line \"V N\"");
    while (std::getline(in, line)) {
        std::istringstream words(line);
        int64_t label = 0;
        if (!(words >> label)) throw std::runtime_error(path + ": a line without a label");
        std::vector<int64_t> ids;
        for (int64_t id; words >> id;) {
            if (id < 0 || id >= d.vocab)
                throw std::runtime_error(path + ": id " + std::to_string(id) + " outside [0, " +
                                         std::to_string(d.vocab) + ")");
            ids.push_back(id);
        }
        if (ids.empty()) throw std::runtime_error(path + ": a document without ids");
        d.ids.push_back(torch::tensor(ids, torch::kLong));
        d.labels.push_back(label);
    }
    if (static_cast<int64_t>(d.ids.size()) != n)
        throw std::runtime_error(path + ": " + std::to_string(d.ids.size()) +
                                 " documents, the first line says " + std::to_string(n));
    return d;
}

// The script's batch_of: the rows' ids concatenated, each row's start offset, its labels.
struct Batch {
    torch::Tensor ids, offsets, labels;
};

Batch batch_of(const Docs& d, const std::vector<int64_t>& idx) {
    std::vector<torch::Tensor> rows;
    std::vector<int64_t> offsets, labels;
    int64_t at = 0;
    for (int64_t i : idx) {
        rows.push_back(d.ids[i]);
        offsets.push_back(at);
        at += d.ids[i].numel();
        labels.push_back(d.labels[i]);
    }
    return {torch::cat(rows), torch::tensor(offsets, torch::kLong),
            torch::tensor(labels, torch::kLong)};
}

// Member order is construction order: embedding, fc1, fc2, as in the script's Model.
struct BagImpl : torch::nn::Module {
    BagImpl(int64_t vocab, int64_t classes)
        : embedding(register_module(
              "embedding", torch::nn::EmbeddingBag(
                               torch::nn::EmbeddingBagOptions(vocab, 64).mode(torch::kMean)))),
          fc1(register_module("fc1", torch::nn::Linear(64, 64))),
          fc2(register_module("fc2", torch::nn::Linear(64, classes))) {}
    torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& offsets) {
        return fc2(torch::relu(fc1(embedding(ids, offsets))));
    }
    torch::nn::EmbeddingBag embedding;
    torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Bag);

// Each parameter reduced to sum_i x_i * (i + 1) in float64 by libtorch's own kernels, which is
// what the Python side calls too, so equal weights give equal bits.
void print_init_checksum(Bag& model) {
    for (const auto& p : model->named_parameters()) {
        torch::Tensor x = p.value().detach().to(torch::kDouble).flatten();
        torch::Tensor w = torch::arange(1, x.numel() + 1, torch::kDouble);
        std::printf("%s %.17g\n", p.key().c_str(), (x * w).sum().item<double>());
    }
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int run(int argc, char** argv) {
    std::string train_path, test_path, pred_path;
    int64_t epochs = 5, batch = 32, seed = 0, threads = 2;
    double lr = 1e-3;
    bool json = false, init_checksum = false;
    int64_t vocab_only = 0;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--train")
            train_path = value();
        else if (arg == "--test")
            test_path = value();
        else if (arg == "--pred")
            pred_path = value();
        else if (arg == "--epochs")
            epochs = std::stoll(value());
        else if (arg == "--batch")
            batch = std::stoll(value());
        else if (arg == "--lr")
            lr = std::stod(value());
        else if (arg == "--seed")
            seed = std::stoll(value());
        else if (arg == "--threads")
            threads = std::stoll(value());
        else if (arg == "--json")
            json = true;
        else if (arg == "--init-checksum")
            init_checksum = true;
        else if (arg == "--vocab")
            vocab_only = std::stoll(value());
        else
            throw std::runtime_error("unknown argument " + arg);
    }
    const char* usage =
        "usage: libtorch_text_classifier --train DIR/train.ids --test DIR/test.ids [--pred FILE]"
        " [--epochs 5] [--batch 32] [--lr 1e-3] [--seed 0] [--threads 2] [--json]\n"
        "       libtorch_text_classifier --init-checksum --vocab V [--seed 0]";
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(static_cast<uint64_t>(seed));
    if (init_checksum) {
        if (vocab_only <= 0) throw std::runtime_error(usage);
        Bag model(vocab_only, 2);
        print_init_checksum(model);
        return 0;
    }
    if (train_path.empty() || test_path.empty()) throw std::runtime_error(usage);

    auto t0 = std::chrono::steady_clock::now();
    Docs train = read_ids(train_path);
    Docs test = read_ids(test_path);
    const double data_s = seconds_since(t0);
    const int64_t n = static_cast<int64_t>(train.ids.size());

    Bag model(train.vocab, 2);
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(lr));

    auto t1 = std::chrono::steady_clock::now();
    int64_t steps = 0;
    std::vector<double> epoch_s;
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
        auto te = std::chrono::steady_clock::now();
        model->train();
        // randperm's dtype stated: the C++ factory's default dtype is float, not long.
        torch::Tensor order = torch::randperm(n, torch::kLong);
        const int64_t* o = order.data_ptr<int64_t>();
        for (int64_t b = 0; b < n; b += batch) {
            std::vector<int64_t> idx(o + b, o + std::min(b + batch, n));
            Batch x = batch_of(train, idx);
            opt.zero_grad();
            torch::Tensor loss =
                torch::nn::functional::cross_entropy(model->forward(x.ids, x.offsets), x.labels);
            loss.backward();
            opt.step();
            ++steps;
        }
        epoch_s.push_back(seconds_since(te));
    }
    const double train_s = seconds_since(t1);

    model->eval();
    std::vector<int64_t> pred;
    {
        torch::NoGradGuard no_grad;
        const int64_t m = static_cast<int64_t>(test.ids.size());
        for (int64_t b = 0; b < m; b += 256) {
            std::vector<int64_t> idx;
            for (int64_t i = b; i < std::min(b + 256, m); ++i)
                idx.push_back(i);
            Batch x = batch_of(test, idx);
            torch::Tensor p = model->forward(x.ids, x.offsets).argmax(1);
            for (int64_t i = 0; i < p.numel(); ++i)
                pred.push_back(p[i].item<int64_t>());
        }
    }
    if (!pred_path.empty()) {
        std::ofstream out(pred_path);
        for (int64_t c : pred)
            out << (c == 1 ? "__label__spam" : "__label__ham") << '\n';
        if (!out) throw std::runtime_error("cannot write " + pred_path);
    }

    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::ostringstream epochs_json;
    for (size_t i = 0; i < epoch_s.size(); ++i)
        epochs_json << (i ? ", " : "") << epoch_s[i];
    std::ostringstream s;
    s << "{\"framework\": \"libtorch " << TORCH_VERSION << "\", \"train_docs\": " << n
      << ", \"test_docs\": " << test.ids.size() << ", \"vocab\": " << train.vocab
      << ", \"epochs\": " << epochs << ", \"batch\": " << batch << ", \"threads\": " << threads
      << ", \"steps\": " << steps << ", \"data_s\": " << data_s << ", \"train_s\": " << train_s
      << ", \"epoch_s\": [" << epochs_json.str() << "], \"step_ms\": " << 1000 * train_s / steps
      << ", \"peak_rss_mb\": " << ru.ru_maxrss / 1024.0 << "}";
    if (json) {
        std::cout << s.str() << std::endl;
    } else {
        std::cout << "libtorch " << TORCH_VERSION << ": " << steps << " steps, " << train_s
                  << " s training, peak RSS " << ru.ru_maxrss / 1024.0 << " MB" << std::endl;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "libtorch_text_classifier: " << e.what() << std::endl;
        return 1;
    }
}
