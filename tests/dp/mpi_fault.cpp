// tests/dp/mpi_fault.cpp — a rank that stops answering: run as
//   mpirun -np 2 minidl_mpi_fault [timeout_s]
// Both ranks meet once; then rank 1 stops itself (SIGSTOP: alive but silent — a killed rank would
// make mpirun end the job by itself, which tests nothing) and rank 0 enters an all_reduce, which
// must throw CommError within the timeout. Rank 0 prints the error and exits 3; mpirun then ends
// the job. tests/dp/run_mpi_fault.sh checks the output and the time and cleans up.
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "core/comm.h"

using namespace minidl;

int main(int argc, char** argv) {
    const double timeout = argc > 1 ? std::atof(argv[1]) : 2.0;
    auto comm = mpi::world({.timeout_s = timeout});
    comm->barrier();  // both alive
    if (comm->rank() == 1) {
        std::raise(SIGSTOP);
        return 0;
    }
    Tensor t = Tensor::ones({1024});
    try {
        comm->all_reduce({t});
    } catch (const CommError& e) {
        std::fprintf(stderr, "rank %d: CommError: %s\n", comm->rank(), e.what());
        return 3;
    }
    std::fprintf(stderr, "rank 0: the all_reduce returned although rank 1 is stopped\n");
    return 0;
}
