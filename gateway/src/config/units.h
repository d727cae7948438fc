// Parsing of the config file's units: durations ("250ms", "5s", "2m"), sizes ("8KiB", "1MiB"),
// rates ("100/s", "6000/m") and fractions ("50%" or 0.5).
//
// Every parser returns std::nullopt on anything it does not fully accept (trailing garbage,
// overflow, negative values, unknown units); the config loader turns that into an error that
// names the file position and key. Whitespace is not allowed inside a value.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/core/clock.h"

namespace bulwark::gateway::config {

// <number><unit>, unit one of ns, us, ms, s, m, h; the number may have a fraction ("1.5s").
// "0" alone is accepted as zero.
std::optional<Duration> parse_duration(std::string_view text) noexcept;

// <integer>[unit], unit one of B, KiB, MiB, GiB, TiB (powers of 1024); no unit means bytes.
std::optional<uint64_t> parse_size(std::string_view text) noexcept;

// <number>/<unit>, unit one of s, m, h: events per second.
std::optional<double> parse_rate(std::string_view text) noexcept;

// "<number>%" (0..100) or a plain number in [0, 1]; returns the fraction.
std::optional<double> parse_fraction(std::string_view text) noexcept;

}  // namespace bulwark::gateway::config
