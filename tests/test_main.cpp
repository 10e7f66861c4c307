// tests/test_main.cpp — the doctest runner of the CPU suite (every test file links into it).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
