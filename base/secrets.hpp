#pragma once

// Secrets never leave the process: a password in a libpq conninfo
// (`password=...`, `sslpassword=...`) or in a URL's user information
// (`postgresql://user:PASSWORD@host`, `redis://:PASSWORD@host`) is replaced
// by `***` wherever flowmatch writes text it did not make itself: log lines,
// configuration errors, `--dump-config`, dead letter details.

#include <string>
#include <string_view>

namespace flowmatch {

/// `text` with every password value replaced by `***`. Over-masks rather
/// than under-masks: an unquoted value ends at white space, a quoted one
/// at its closing quote (or the end of the text when there is none).
std::string mask_secrets(std::string_view text);

/// Whether `text` may hold a secret `mask_secrets` would hide (cheap: for
/// the log formatter's fast path).
bool may_hold_secret(std::string_view text);

} // namespace flowmatch
