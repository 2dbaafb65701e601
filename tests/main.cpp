#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "model/blas.h"

int main(int argc, char** argv) {
    model::configure_blas(); // as the gpt2 program does, so tests run the same kernels
    return doctest::Context(argc, argv).run();
}
