// Fuzzes the block-pattern scan: folding must never crash, never grow its input, be stable
// (folding a folded text changes nothing: nothing is left to decode, case or fold — the input
// is limited to bytes whose decoding cannot make a new escape), and the scan must report a
// shape it really found in the folded text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/block_patterns/block_patterns.h"

using bulwark::gateway::filters::find_pattern;
using bulwark::gateway::filters::fold_for_scan;
using bulwark::gateway::filters::scan_target;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('?');
  const std::string_view path = input.substr(0, split);
  const std::string_view query = split == std::string_view::npos ? "" : input.substr(split + 1);
  std::string folded;
  fold_for_scan(input, true, folded);
  if (folded.size() > input.size()) std::abort();
  if (input.find('%') == std::string_view::npos) {
    std::string again;
    fold_for_scan(folded, false, again);
    if (again != folded) std::abort();
  }
  const auto match = find_pattern(folded, {});
  if (match && folded.find(match.shape) == std::string::npos) std::abort();
  std::string scratch;
  const auto scanned = scan_target(path, query, {}, scratch);
  if (scanned && scanned.shape.empty()) std::abort();
  return 0;
}
