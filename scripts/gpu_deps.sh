#!/usr/bin/env bash
# scripts/gpu_deps.sh — copies the build's header-only dependencies (Eigen, doctest,
# nlohmann-json, CLI11: Debian's packages, installed by scripts/setup.sh) into .deps/, a
# relocatable CMake prefix that travels to a machine without a package registry (the GPU
# machines), where scripts/gpu_check.sh passes it to CMake as CMAKE_PREFIX_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
rm -rf .deps
mkdir -p .deps/include .deps/share/eigen3 .deps/lib/cmake .deps/share/cmake
cp -r /usr/include/eigen3 .deps/include/
cp -r /usr/share/eigen3/cmake .deps/share/eigen3/
cp -r /usr/include/doctest .deps/include/
cp -r /usr/lib/cmake/doctest .deps/lib/cmake/
cp -r /usr/include/nlohmann .deps/include/
cp -r /usr/share/cmake/nlohmann_json .deps/share/cmake/
cp -r /usr/include/CLI .deps/include/
cp -r /usr/share/cmake/CLI11 .deps/share/cmake/
# doctest's exported targets name /usr literally: make them relative to their own location.
sed -i 's|^set(_IMPORT_PREFIX "/usr")|get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)|' \
  .deps/lib/cmake/doctest/doctestTargets.cmake
du -sh .deps
