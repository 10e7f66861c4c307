// tests/core/test_row_grad.cpp — row-sparse embedding gradients (core/row_grad.h) are a
// representation, not an approximation: every observable result is BITWISE the dense path's.
//
// Each case runs the same computation twice, with set_row_sparse_grads(false) (the dense path:
// a zero-filled [V, C] gradient, PyTorch's default) and true, and compares bytes: gradients as
// grad() returns them, Adam/AdamW trajectories (weights and both moments) for every option
// combination, accumulation over several backward passes (row-sparse + row-sparse, dense +
// row-sparse, row-sparse + dense), FGM, PGD, AWP (both bounds, 1 and 2 steps) and
// gradient-accumulation training steps, on 1 and 2 threads, and a PGD whose adversarial passes
// look up other rows than the clean pass. Tables are sized so that rows straddle the optimizer's
// fixed blocks (C = 7) and span several of them. Also: which tables get the row-sparse form (leaf,
// CPU, no hooks), that zero_grad drops it, and that the attacks move only the touched rows.
#include <doctest/doctest.h>

#include <array>
#include <functional>

#include "core/autograd.h"
#include "core/kernels.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/row_grad.h"
#include "ops/ops.h"
#include "optim/adam.h"
#include "optim/adamw.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/awp.h"
#include "tricks/fgm.h"
#include "tricks/pgd.h"
#include "tricks/train_step.h"

using namespace minidl;
using minidl::test::bitwise_equal;

namespace {

struct RowGradSwitch {
    bool saved = row_sparse_grads();
    explicit RowGradSwitch(bool on) { set_row_sparse_grads(on); }
    ~RowGradSwitch() { set_row_sparse_grads(saved); }
};

struct ThreadsGuard {
    int saved = get_num_threads();
    ~ThreadsGuard() { set_num_threads(saved); }
};

// Ids with repeats (several ids per row, so rows sum several contributions in order), a padding
// id, and offsets with an empty bag.
struct Lookup {
    Tensor ids, offsets;
};

Lookup make_lookup(int64_t V, uint64_t seed, int64_t L = 60) {
    Generator gen(seed);
    std::vector<int64_t> ids;
    const std::vector<double> u = Tensor::rand({L}, &gen).to_vector<double>();
    for (double x : u)
        ids.push_back(static_cast<int64_t>(x * x * static_cast<double>(V)) % V);  // skewed
    ids[3] = ids[7] = 0;                                 // the padding id, when one is used
    std::vector<int64_t> offsets = {0, 10, 10, 25, 40};  // bag 1 is empty
    return {Tensor::from_vector(ids, {L}), Tensor::from_vector(offsets, {5})};
}

// Runs `fn` with the row-sparse path off and on (on 1 and 2 threads for the latter) and checks
// that every tensor it returns is bitwise the same.
void check_same_both_ways(const std::function<std::vector<Tensor>()>& fn) {
    ThreadsGuard threads;
    std::vector<Tensor> dense;
    {
        RowGradSwitch off(false);
        set_num_threads(1);
        dense = fn();
    }
    for (int t : {1, 2}) {
        CAPTURE(t);
        RowGradSwitch on(true);
        set_num_threads(t);
        const std::vector<Tensor> sparse = fn();
        REQUIRE(sparse.size() == dense.size());
        for (size_t i = 0; i < dense.size(); ++i) {
            CAPTURE(i);
            CHECK(bitwise_equal(sparse[i], dense[i]));
        }
    }
}

}  // namespace

TEST_CASE_TEMPLATE("core/row_grad: embedding_bag's gradient is bitwise the dense one", T, float,
                   double) {
    const DType dtype = std::is_same_v<T, float> ? DType::F32 : DType::F64;
    for (BagMode mode : {BagMode::Mean, BagMode::Sum}) {
        for (int64_t padding : {int64_t{-1}, int64_t{0}}) {
            CAPTURE(static_cast<int>(mode));
            CAPTURE(padding);
            check_same_both_ways([&] {
                Generator gen(5);
                Tensor w = Tensor::randn({40, 7}, &gen, dtype).set_requires_grad();
                const Lookup lk = make_lookup(40, 9);
                Tensor h = embedding_bag(w, lk.ids, lk.offsets, mode, padding);
                sum(h * Tensor::randn({5, 7}, &gen, dtype)).backward();
                if (row_sparse_grads()) {
                    const RowGrad* rg = row_grad(w);
                    REQUIRE(rg != nullptr);
                    CHECK(rg->values.shape()[0] < 40);  // only the touched rows are stored
                }
                return std::vector<Tensor>{w.grad()};
            });
        }
    }
}

TEST_CASE("core/row_grad: embedding's gradient is bitwise the dense one") {
    for (int64_t padding : {int64_t{-1}, int64_t{2}}) {
        CAPTURE(padding);
        check_same_both_ways([&] {
            Generator gen(6);
            Tensor w = Tensor::randn({30, 5}, &gen).set_requires_grad();
            const Tensor ids = Tensor::from_vector(std::vector<int64_t>{2, 4, 4, 29, 2, 0, 4}, {7});
            sum(embedding(w, ids, padding) * Tensor::randn({7, 5}, &gen)).backward();
            return std::vector<Tensor>{w.grad()};
        });
    }
}

TEST_CASE("core/row_grad: Adam and AdamW on row-sparse gradients follow the dense trajectory") {
    struct Variant {
        const char* name;
        bool adamw, amsgrad, maximize;
        double weight_decay;
    };
    const Variant variants[] = {{"adam", false, false, false, 0.0},
                                {"adam wd", false, false, false, 0.1},
                                {"adam amsgrad maximize", false, true, true, 0.0},
                                {"adamw", true, false, false, 0.01},
                                {"adamw amsgrad", true, true, false, 0.01}};
    for (const Variant& var : variants) {
        const std::string variant = var.name;
        CAPTURE(variant);
        check_same_both_ways([&] {
            // 6,000 x 7 = 42,000 elements: three optimizer blocks, rows straddling their edges.
            constexpr int64_t V = 6000;
            Generator gen(8);
            Tensor w = Tensor::randn({V, 7}, &gen).set_requires_grad();
            std::unique_ptr<optim::Optimizer> opt;
            const optim::AdamOptions o{.lr = 0.01,
                                       .weight_decay = var.weight_decay,
                                       .amsgrad = var.amsgrad,
                                       .maximize = var.maximize};
            if (var.adamw) {
                opt = std::make_unique<optim::AdamW>(
                    std::vector<Tensor>{w}, optim::AdamWOptions{.lr = o.lr,
                                                                .weight_decay = o.weight_decay,
                                                                .amsgrad = o.amsgrad,
                                                                .maximize = o.maximize});
            } else {
                opt = std::make_unique<optim::Adam>(std::vector<Tensor>{w}, o);
            }
            for (uint64_t step = 0; step < 6; ++step) {
                opt->zero_grad();
                const Lookup lk = make_lookup(V, 100 + step, 400);
                sum(embedding_bag(w, lk.ids, lk.offsets, BagMode::Mean, 0) *
                    Tensor::randn({5, 7}, &gen))
                    .backward();
                opt->step();
            }
            std::vector<Tensor> out{w.detach().clone()};
            for (const auto& [key, t] : opt->state(0)->tensors)
                out.push_back(t.clone());
            return out;
        });
    }
}

TEST_CASE("core/row_grad: several backward passes accumulate as the dense path does") {
    Generator gen0(12);
    const Tensor mix = Tensor::randn({7, 5}, &gen0);  // a second, dense use of the table
    SUBCASE("row-sparse + row-sparse") {
        check_same_both_ways([&] {
            Generator gen(10);
            Tensor w = Tensor::randn({50, 7}, &gen).set_requires_grad();
            for (uint64_t k = 0; k < 3; ++k) {
                const Lookup lk = make_lookup(50, 20 + k);
                sum(embedding_bag(w, lk.ids, lk.offsets) * Tensor::randn({5, 7}, &gen)).backward();
            }
            return std::vector<Tensor>{w.grad()};
        });
    }
    SUBCASE("dense (grad() read in between) + row-sparse") {
        check_same_both_ways([&] {
            Generator gen(10);
            Tensor w = Tensor::randn({50, 7}, &gen).set_requires_grad();
            const Lookup a = make_lookup(50, 30), b = make_lookup(50, 31);
            sum(embedding_bag(w, a.ids, a.offsets) * Tensor::randn({5, 7}, &gen)).backward();
            const Tensor first = w.grad().clone();  // materialises the dense gradient
            sum(embedding_bag(w, b.ids, b.offsets) * Tensor::randn({5, 7}, &gen)).backward();
            return std::vector<Tensor>{first, w.grad()};
        });
    }
    SUBCASE("row-sparse and dense in one graph (a tied table)") {
        check_same_both_ways([&] {
            Generator gen(10);
            Tensor w = Tensor::randn({50, 7}, &gen).set_requires_grad();
            const Lookup a = make_lookup(50, 40);
            Tensor h = embedding_bag(w, a.ids, a.offsets);  // [5, 7]
            Tensor logits = matmul(h, w.t());               // [5, 50], dense gradient for w
            sum(logits * Tensor::randn({5, 50}, &gen)).backward();
            return std::vector<Tensor>{w.grad()};
        });
    }
    (void)mix;
}

namespace {

// Four training steps of the tiny model with `attack` set on the step configuration (and
// accumulation `accum`); returns the parameters after them.
std::vector<Tensor> train_tiny(
    int64_t accum, const std::function<void(nn::Module&, tricks::TrainStepConfig&)>& attack) {
    manual_seed(0);
    test::TinyModel model(40, 8, 2);
    optim::Adam opt(model.parameters(), {.lr = 0.05});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    cfg.accum_steps = accum;
    attack(model, cfg);
    for (uint64_t step = 0; step < 4; ++step) {
        const Lookup lk = make_lookup(40, 50 + step, 40);
        const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1, 0}, {4});
        const Tensor offsets = lk.offsets.narrow0(0, 4);
        tricks::train_step(cfg, 4, [&](int64_t b, int64_t e) {
            const std::vector<int64_t> off = offsets.to_vector<int64_t>();
            const int64_t lo = off[static_cast<size_t>(b)];
            const int64_t hi = e < 4 ? off[static_cast<size_t>(e)] : lk.ids.numel();
            std::vector<int64_t> sub;
            for (int64_t k = b; k < e; ++k)
                sub.push_back(off[static_cast<size_t>(k)] - lo);
            const Tensor ids = lk.ids.narrow0(lo, hi - lo);
            const Tensor offs = Tensor::from_vector(sub, {e - b});
            return cross_entropy(model.forward(ids, offs), labels.narrow0(b, e - b));
        });
    }
    std::vector<Tensor> out;
    for (const Tensor& p : model.parameters())
        out.push_back(p.detach().clone());
    return out;
}

}  // namespace

TEST_CASE("core/row_grad: FGM and accumulation training steps are bitwise the dense ones") {
    for (int64_t accum : {int64_t{1}, int64_t{2}}) {
        CAPTURE(accum);
        std::unique_ptr<tricks::FGM> fgm;
        check_same_both_ways([&] {
            return train_tiny(accum, [&](nn::Module& m, tricks::TrainStepConfig& cfg) {
                fgm = std::make_unique<tricks::FGM>(m, tricks::FGMOptions{.epsilon = 0.5});
                cfg.fgm = fgm.get();
            });
        });
    }
}

TEST_CASE("core/row_grad: PGD training steps are bitwise the dense ones") {
    // epsilon small enough that the projection acts, alpha large enough that it must.
    for (int64_t accum : {int64_t{1}, int64_t{2}}) {
        CAPTURE(accum);
        std::unique_ptr<tricks::PGD> pgd;
        check_same_both_ways([&] {
            return train_tiny(accum, [&](nn::Module& m, tricks::TrainStepConfig& cfg) {
                pgd = std::make_unique<tricks::PGD>(
                    m, tricks::PGDOptions{.epsilon = 0.2, .alpha = 0.15, .steps = 3});
                cfg.pgd = pgd.get();
            });
        });
    }
}

TEST_CASE("core/row_grad: AWP training steps are bitwise the dense ones, both bounds") {
    for (tricks::AWPBound bound : {tricks::AWPBound::Elementwise, tricks::AWPBound::Layerwise})
        for (int steps : {1, 2})
            for (int64_t accum : {int64_t{1}, int64_t{2}}) {
                CAPTURE(static_cast<int>(bound));
                CAPTURE(steps);
                CAPTURE(accum);
                std::unique_ptr<tricks::AWP> awp;
                check_same_both_ways([&] {
                    return train_tiny(accum, [&](nn::Module& m, tricks::TrainStepConfig& cfg) {
                        awp = std::make_unique<tricks::AWP>(
                            m, tricks::AWPOptions{
                                   .adv_lr = 0.5, .adv_eps = 0.05, .bound = bound, .steps = steps});
                        cfg.awp = awp.get();
                    });
                });
            }
}

TEST_CASE("core/row_grad: PGD and AWP move only the touched rows and leave the gradient as rows") {
    RowGradSwitch on(true);
    manual_seed(0);
    test::TinyModel model(40, 8, 2);
    const Lookup lk = make_lookup(40, 12);
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1}, {3});
    const Tensor offsets = lk.offsets.narrow0(0, 3);
    Tensor table = model.parameters()[0];
    auto loss = [&] { return cross_entropy(model.forward(lk.ids, offsets), labels); };
    auto rows_moved = [&](const Tensor& before) {
        const std::vector<double> now = table.detach().to_vector<double>(),
                                  was = before.to_vector<double>();
        std::vector<int64_t> moved;
        for (int64_t r = 0; r < 40; ++r)
            for (int64_t c = 0; c < 8; ++c)
                if (now[static_cast<size_t>(r * 8 + c)] != was[static_cast<size_t>(r * 8 + c)]) {
                    moved.push_back(r);
                    break;
                }
        return moved;
    };
    const Tensor before = table.detach().clone();
    // One attack's run(): during each pass exactly the touched rows have moved; afterwards the
    // table is restored bitwise and its gradient is still rows.
    auto check_attack = [&](auto& attack, int expected_passes) {
        loss().backward();
        const std::vector<int64_t> touched = row_grad(table)->rows.to_vector<int64_t>();
        int passes = 0;
        attack.run([&] {
            CHECK(rows_moved(before) == touched);
            loss().backward();
            ++passes;
        });
        CHECK(passes == expected_passes);
        CHECK(bitwise_equal(table.detach(), before));
        CHECK(row_grad(table) != nullptr);
    };
    SUBCASE("PGD") {
        tricks::PGD pgd(model, {.epsilon = 0.2, .alpha = 0.15, .steps = 3});
        check_attack(pgd, 3);
    }
    SUBCASE("AWP") {
        tricks::AWP awp(model, {.adv_lr = 0.5, .adv_eps = 0.05, .steps = 2});
        check_attack(awp, 2);
    }
}

TEST_CASE("core/row_grad: a PGD step over other rows than the backed-up ones runs dense, bitwise") {
    // The adversarial passes look up another batch: the rows of their gradients are not the
    // clean pass's, so the backup is made whole and the result must still be the dense one.
    check_same_both_ways([&] {
        manual_seed(0);
        test::TinyModel model(40, 8, 2);
        const Lookup clean = make_lookup(40, 12), other = make_lookup(40, 13);
        const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1}, {3});
        cross_entropy(model.forward(clean.ids, clean.offsets.narrow0(0, 3)), labels).backward();
        const Tensor before = model.parameters()[0].detach().clone();
        tricks::PGD pgd(model, {.epsilon = 0.2, .alpha = 0.15, .steps = 3});
        std::vector<Tensor> out;
        pgd.run([&] {
            out.push_back(model.parameters()[0].detach().clone());  // E during each pass
            cross_entropy(model.forward(other.ids, other.offsets.narrow0(0, 3)), labels).backward();
        });
        CHECK(bitwise_equal(model.parameters()[0].detach(), before));
        for (const Tensor& p : model.parameters())
            out.push_back(p.grad().clone());
        return out;
    });
}

TEST_CASE("core/row_grad: only leaf tables without hooks get row-sparse gradients") {
    RowGradSwitch on(true);
    const Lookup lk = make_lookup(20, 3);
    Generator gen(1);
    SUBCASE("a leaf") {
        Tensor w = Tensor::randn({20, 4}, &gen).set_requires_grad();
        sum(embedding_bag(w, lk.ids, lk.offsets)).backward();
        CHECK(row_grad(w) != nullptr);
        CHECK(w.grad().defined());      // grad() materialises...
        CHECK(row_grad(w) == nullptr);  // ...once
        CHECK(w.grad().shape() == Shape{20, 4});
    }
    SUBCASE("a leaf with a post-accumulate hook sees a dense gradient") {
        Tensor w = Tensor::randn({20, 4}, &gen).set_requires_grad();
        bool seen_dense = false;
        autograd::add_post_accumulate_hook(w, [&](const Tensor& leaf) {
            seen_dense = row_grad(leaf) == nullptr && leaf.grad().defined();
        });
        sum(embedding_bag(w, lk.ids, lk.offsets)).backward();
        CHECK(seen_dense);
    }
    SUBCASE("a computed table (not a leaf)") {
        Tensor w = Tensor::randn({20, 4}, &gen).set_requires_grad();
        Tensor scaled = w * 2.0;
        scaled.retain_grad();
        sum(embedding_bag(scaled, lk.ids, lk.offsets)).backward();
        CHECK(row_grad(scaled) == nullptr);
        CHECK(row_grad(w) == nullptr);
        CHECK(scaled.grad().defined());
        CHECK(w.grad().defined());
    }
    SUBCASE("switched off") {
        RowGradSwitch off(false);
        Tensor w = Tensor::randn({20, 4}, &gen).set_requires_grad();
        sum(embedding_bag(w, lk.ids, lk.offsets)).backward();
        CHECK(row_grad(w) == nullptr);
    }
}

TEST_CASE("core/row_grad: zero_grad drops or zeroes a row-sparse gradient") {
    RowGradSwitch on(true);
    const Lookup lk = make_lookup(20, 3);
    Generator gen(1);
    Tensor w = Tensor::randn({20, 4}, &gen).set_requires_grad();
    optim::Adam opt({w}, {});
    sum(embedding_bag(w, lk.ids, lk.offsets)).backward();
    REQUIRE(row_grad(w) != nullptr);
    SUBCASE("set_to_none") {
        opt.zero_grad(true);
        CHECK(row_grad(w) == nullptr);
        CHECK_FALSE(w.grad().defined());
    }
    SUBCASE("zeros") {
        opt.zero_grad(false);
        CHECK(row_grad(w) == nullptr);
        REQUIRE(w.grad().defined());
        for (double x : w.grad().to_vector<double>())
            CHECK(x == 0.0);
    }
}

TEST_CASE("core/autograd: a leaf takes the gradient its backward made, without a copy") {
    Tensor x = Tensor::ones({1000}).set_requires_grad();
    const void* made = nullptr;
    Tensor y = Tensor::ones({1000});
    autograd::record("test_op", {x}, y, [&](const Tensor& gy, const std::vector<bool>&) {
        Tensor g = gy.clone();
        made = g.data_ptr();
        return std::vector<Tensor>{g};
    });
    y.backward(Tensor::ones({1000}));
    REQUIRE(made != nullptr);
    CHECK(x.grad().data_ptr() == made);
}

TEST_CASE(
    "core/row_grad: FGM moves and restores only the touched rows, keeping the gradient rows") {
    RowGradSwitch on(true);
    manual_seed(0);
    test::TinyModel model(40, 8, 2);
    const Lookup lk = make_lookup(40, 12);
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 1}, {3});
    const Tensor offsets = lk.offsets.narrow0(0, 3);
    cross_entropy(model.forward(lk.ids, offsets), labels).backward();
    Tensor table = model.parameters()[0];
    const RowGrad* rg = row_grad(table);
    REQUIRE(rg != nullptr);
    const Tensor rows = rg->rows;
    const std::vector<int64_t> touched = rows.to_vector<int64_t>();
    const Tensor before = table.detach().clone();
    // The norm from the rows is the dense gradient's, bitwise.
    const double sparse_norm = std::sqrt(row_sum_squares(rg->rows, rg->values, table.size(1)));
    CHECK(sparse_norm == global_l2_norm({densify(*rg, table.shape())}));

    tricks::FGM fgm(model, {.epsilon = 0.5});
    bool adversarial_pass_ran = false;
    fgm.run([&] {
        // Inside the attack: exactly the touched rows moved, each by the dense axpy's rounding.
        const Tensor dense_g = densify(*row_grad(table), table.shape());
        Tensor expected = before.clone();
        expected.add_(dense_g, 0.5 / sparse_norm);
        CHECK(bitwise_equal(table.detach(), expected));
        const std::vector<double> now = table.detach().to_vector<double>(),
                                  was = before.to_vector<double>();
        int64_t moved_rows = 0;
        for (int64_t r = 0; r < 40; ++r) {
            bool moved = false;
            for (int64_t c = 0; c < 8; ++c)
                moved = moved ||
                        now[static_cast<size_t>(r * 8 + c)] != was[static_cast<size_t>(r * 8 + c)];
            moved_rows += moved;
        }
        CHECK(moved_rows == static_cast<int64_t>(touched.size()));
        cross_entropy(model.forward(lk.ids, offsets), labels).backward();
        adversarial_pass_ran = true;
    });
    CHECK(adversarial_pass_ran);
    CHECK(bitwise_equal(table.detach(), before));  // restored bitwise
    CHECK(row_grad(table) != nullptr);             // never made dense
}

TEST_CASE("core/row_grad: row_sum_squares is the dense sum of squares bitwise, across blocks") {
    // 5,000 x 7 = 35,000 elements: three of the CPU sum's fixed blocks, with rows straddling the
    // block boundaries and the sum's lanes, and every other row touched. 1,000 x 64: rows that
    // start on a lane boundary (the whole-group path) in two blocks; 300 x 40: rows on and off it.
    for (DType dtype : {DType::F32, DType::F64}) {
        for (const auto [num_rows, width, stride] :
             {std::array<int64_t, 3>{5000, 7, 2}, {1000, 64, 3}, {300, 40, 1}}) {
            CAPTURE(dtype);
            CAPTURE(width);
            Generator gen(21);
            std::vector<int64_t> r;
            for (int64_t k = 0; k < num_rows; k += stride)
                r.push_back(k);
            const Tensor rows = Tensor::from_vector(r, {static_cast<int64_t>(r.size())});
            const Tensor values =
                Tensor::randn({static_cast<int64_t>(r.size()), width}, &gen).to(dtype) * 3.0;
            const Tensor dense = densify(RowGrad{rows, values}, {num_rows, width});
            CHECK(row_sum_squares(rows, values, width) == cpu_kernels().sum_squares({dense}));
        }
    }
}
