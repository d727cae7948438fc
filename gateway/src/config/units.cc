#include "config/units.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace bulwark::gateway::config {
namespace {

// Splits "<number><suffix>" at the first character that cannot be part of a number.
struct Split {
  double number;
  std::string_view suffix;
};

std::optional<Split> split_number(std::string_view text) {
  if (text.empty() || text.front() == '-' || text.front() == '+') return std::nullopt;
  double value = 0;
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || !std::isfinite(value) || value < 0) return std::nullopt;
  return Split{value, text.substr(static_cast<std::size_t>(end - text.data()))};
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) noexcept {
  const auto split = split_number(text);
  if (!split) return std::nullopt;
  double ns_per_unit = 0;
  const std::string_view u = split->suffix;
  if (u == "ns") {
    ns_per_unit = 1;
  } else if (u == "us") {
    ns_per_unit = 1e3;
  } else if (u == "ms") {
    ns_per_unit = 1e6;
  } else if (u == "s") {
    ns_per_unit = 1e9;
  } else if (u == "m") {
    ns_per_unit = 60e9;
  } else if (u == "h") {
    ns_per_unit = 3600e9;
  } else if (u.empty() && split->number == 0) {
    return Duration::zero();
  } else {
    return std::nullopt;
  }
  const double ns = split->number * ns_per_unit;
  if (ns >= static_cast<double>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return Duration(static_cast<int64_t>(std::llround(ns)));
}

std::optional<uint64_t> parse_size(std::string_view text) noexcept {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || text.empty() || text.front() == '-' || text.front() == '+') {
    return std::nullopt;
  }
  const std::string_view u = text.substr(static_cast<std::size_t>(end - text.data()));
  int shift = 0;
  if (u.empty() || u == "B") {
    shift = 0;
  } else if (u == "KiB") {
    shift = 10;
  } else if (u == "MiB") {
    shift = 20;
  } else if (u == "GiB") {
    shift = 30;
  } else if (u == "TiB") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<double> parse_rate(std::string_view text) noexcept {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto split = split_number(text.substr(0, slash));
  if (!split || !split->suffix.empty()) return std::nullopt;
  const std::string_view u = text.substr(slash + 1);
  double per = 0;
  if (u == "s") {
    per = 1;
  } else if (u == "m") {
    per = 60;
  } else if (u == "h") {
    per = 3600;
  } else {
    return std::nullopt;
  }
  return split->number / per;
}

std::optional<double> parse_fraction(std::string_view text) noexcept {
  const auto split = split_number(text);
  if (!split) return std::nullopt;
  if (split->suffix == "%") {
    if (split->number > 100) return std::nullopt;
    return split->number / 100.0;
  }
  if (!split->suffix.empty() || split->number > 1) return std::nullopt;
  return split->number;
}

}  // namespace bulwark::gateway::config
