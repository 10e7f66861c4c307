// core/check.h — the error types and the two checking macros.
//
// Caller mistakes throw a subclass of minidl::Error chosen by what is wrong (shape, dtype, device,
// index, file format, misuse of state); our own broken invariants throw InternalError. Messages
// follow "<op>: <what is wrong>, <arg>=<value> ..." and print shapes as [2, 3].
//
//   MDL_CHECK(cond, ErrorType, parts...)   caller mistake: throws ErrorType(concat(parts...))
//   MDL_ASSERT(cond, parts...)             our bug: throws InternalError("... (please report)")
//
// Both are wrapped in do { } while (0) so that they behave as one statement (a bare `if` macro
// would capture a following `else`).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace minidl {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct ShapeError : Error {
    using Error::Error;
};
struct DTypeError : Error {
    using Error::Error;
};
struct DeviceError : Error {
    using Error::Error;
};
// The device (CPU or a GPU) has no memory left for an allocation, even after the caching allocator
// gave back its free segments (core/allocator.h); the message names the size, the device and the
// allocator's byte counts.
struct OutOfMemoryError : DeviceError {
    using DeviceError::DeviceError;
};
struct IndexError : Error {
    using Error::Error;
};
struct FormatError : Error {
    using Error::Error;
};
struct StateError : Error {
    using Error::Error;
};
// A value outside its documented domain that is none of the above (negative probability, ...).
struct ValueError : Error {
    using Error::Error;
};
// A NaN or an infinity where a finite value is required: anomaly mode (core/anomaly.h) names the
// op that produced one; writers of weights refuse to save one.
struct NonFiniteError : Error {
    using Error::Error;
};
struct InternalError : Error {
    using Error::Error;
};

namespace detail {
template <typename... Parts>
std::string concat(Parts&&... parts) {
    std::ostringstream os;
    (os << ... << std::forward<Parts>(parts));
    return os.str();
}
}  // namespace detail

}  // namespace minidl

#define MDL_CHECK(cond, ErrorType, ...)                                      \
    do {                                                                     \
        if (!(cond)) throw ErrorType(::minidl::detail::concat(__VA_ARGS__)); \
    } while (0)

#define MDL_ASSERT(cond, ...)                                                     \
    do {                                                                          \
        if (!(cond))                                                              \
            throw ::minidl::InternalError(::minidl::detail::concat(               \
                "internal error at ", __FILE__, ":", __LINE__, ": ", __VA_ARGS__, \
                " (this is a bug in minidl, please report it)"));                 \
    } while (0)
