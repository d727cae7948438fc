#include "redis/resp.h"

#include <hiredis/read.h>

#include <charconv>
#include <new>

namespace bulwark::gateway::redis {

namespace {

void append_number(std::string& out, std::size_t n) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

}  // namespace

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  out.push_back('*');
  append_number(out, args.size());
  out.append("\r\n");
  for (const std::string_view a : args) {
    out.push_back('$');
    append_number(out, a.size());
    out.append("\r\n").append(a).append("\r\n");
  }
}

// hiredis builds replies through these functions; they fill the reader's one Reply instead of
// allocating objects. The top-level object handed back is the Reply itself; array elements are
// folded into it.
struct ReplyReader::Impl {
  redisReader* reader = nullptr;
  Reply reply;

  static Reply& of(const redisReadTask* task) {
    return *static_cast<Reply*>(task->privdata);
  }
  static bool nested(const redisReadTask* task) { return task->parent != nullptr; }

  static void* create_string(const redisReadTask* task, char* data, size_t len) {
    Reply& r = of(task);
    if (nested(task)) return &r;
    r.kind = task->type == REDIS_REPLY_ERROR    ? Reply::Kind::error
             : task->type == REDIS_REPLY_STATUS ? Reply::Kind::status
                                                : Reply::Kind::string;
    r.text.assign(data, len);
    return &r;
  }
  static void* create_array(const redisReadTask* task, int elements) {
    Reply& r = of(task);
    if (nested(task)) return &r;
    r.kind = Reply::Kind::array;
    r.elements = elements < 0 ? 0 : static_cast<std::size_t>(elements);
    r.integer_elements = 0;
    return &r;
  }
  static void* create_integer(const redisReadTask* task, long long value) {
    Reply& r = of(task);
    if (nested(task)) {
      // An element of the top-level array, at index task->idx.
      if (task->parent->parent == nullptr && task->idx >= 0 &&
          static_cast<std::size_t>(task->idx) < Reply::kMaxIntegers) {
        r.integers[static_cast<std::size_t>(task->idx)] = value;
        ++r.integer_elements;
      }
      return &r;
    }
    r.kind = Reply::Kind::integer;
    r.integer = value;
    return &r;
  }
  static void* create_nil(const redisReadTask* task) {
    Reply& r = of(task);
    if (!nested(task)) r.kind = Reply::Kind::nil;
    return &r;
  }
  static void free_object(void*) {}

  static redisReplyObjectFunctions functions;
};

redisReplyObjectFunctions ReplyReader::Impl::functions = {
    &ReplyReader::Impl::create_string, &ReplyReader::Impl::create_array,
    &ReplyReader::Impl::create_integer, &ReplyReader::Impl::create_nil,
    &ReplyReader::Impl::free_object};

ReplyReader::ReplyReader() : impl_(std::make_unique<Impl>()) { reset(); }

ReplyReader::~ReplyReader() {
  if (impl_->reader != nullptr) redisReaderFree(impl_->reader);
}

void ReplyReader::reset() {
  if (impl_->reader != nullptr) redisReaderFree(impl_->reader);
  impl_->reader = redisReaderCreateWithFunctions(&Impl::functions);
  if (impl_->reader == nullptr) throw std::bad_alloc();
  impl_->reader->privdata = &impl_->reply;
  broken_ = false;
}

bool ReplyReader::feed(std::string_view bytes) {
  if (broken_) return false;
  if (redisReaderFeed(impl_->reader, bytes.data(), bytes.size()) != REDIS_OK) broken_ = true;
  return !broken_;
}

const Reply* ReplyReader::next() {
  if (broken_) return nullptr;
  void* out = nullptr;
  if (redisReaderGetReply(impl_->reader, &out) != REDIS_OK) {
    broken_ = true;
    return nullptr;
  }
  return out == nullptr ? nullptr : &impl_->reply;
}

}  // namespace bulwark::gateway::redis
