// tests/consumer/main.cpp — fits y = 2x - 1 with one weight and one bias through the installed
// package, and exits 0 only if the loss fell and the fit is right.
#include <minidl/minidl.h>

#include <cmath>
#include <cstdio>

int main() {
    using namespace minidl;
    Tensor x = Tensor::arange(-1, 1, 0.25, DType::F32).view({-1, 1});
    Tensor y = x * 2.0 - 1.0;
    Tensor w = Tensor::zeros({1, 1}).set_requires_grad();
    Tensor b = Tensor::zeros({1}).set_requires_grad();
    double first = 0, last = 0;
    for (int step = 0; step < 200; ++step) {
        Tensor err = linear(x, w, b) - y;
        Tensor loss = mean(err * err);
        if (step == 0) first = loss.item();
        last = loss.item();
        w.set_grad(Tensor());
        b.set_grad(Tensor());
        loss.backward();
        NoGradGuard no_grad;
        w.add_(w.grad(), -0.2);
        b.add_(b.grad(), -0.2);
    }
    std::printf("consumer: loss %.6f -> %.6f, w = %.4f, b = %.4f\n", first, last, w.item(),
                b.item());
    const bool ok = last < first * 1e-3 && std::abs(w.item() - 2.0) < 1e-2 &&
                    std::abs(b.item() + 1.0) < 1e-2;
    return ok ? 0 : 1;
}
