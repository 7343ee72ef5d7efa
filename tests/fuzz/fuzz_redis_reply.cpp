// libFuzzer target: what a Redis server (or anything on its port) could
// answer. The bytes go through hiredis's RESP reader, then through every
// parser flowmatch runs on stream replies (streams/redis.hpp), then each
// entry's `event` field through the decoder, as the reader does.

#include "messages/decoder.hpp"
#include "streams/redis.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace flowmatch;

event_decoder& decoder() {
  static event_decoder d;
  return d;
}

void parse_everything(redisReply* raw) {
  redis::reply owned{raw};
  auto view = owned.view();
  std::string error;
  std::vector<redis::entry_view> entries;
  if (redis::parse_read_reply(view, entries, error))
    for (auto& e : entries) {
      (void) redis::id_less(e.id, "0-0");
      if (e.event)
        (void) decoder().decode(*e.event,
                                event_origin{"fuzz", 1, std::string{e.id}});
    }
  entries.clear();
  (void) redis::parse_entries(view, entries, error);
  std::vector<redis::pending_row> rows;
  (void) redis::parse_pending(view, rows, error);
  (void) redis::find_group(view, "flowmatch");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr)
    return 0;
  redis::bound_replies(reader); // as on every connection of the node
  if (redisReaderFeed(reader, reinterpret_cast<const char*>(data), size)
      == REDIS_OK) {
    for (int n = 0; n < 64; ++n) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == nullptr)
        break;
      parse_everything(static_cast<redisReply*>(reply));
    }
  }
  redisReaderFree(reader);
  return 0;
}
