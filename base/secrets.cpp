#include "base/secrets.hpp"

#include <cctype>

namespace flowmatch {

namespace {

constexpr std::string_view mask = "***";

bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool ends_with_password_key(std::string_view text, size_t end) {
  // `password` or `sslpassword`, any case, as a whole keyword (libpq's
  // key/value form or a URI's query parameter `?password=`).
  constexpr std::string_view key = "password";
  if (end < key.size())
    return false;
  for (size_t i = 0; i < key.size(); ++i)
    if (lower(text[end - key.size() + i]) != key[i])
      return false;
  return true;
}

/// Masks key/value passwords: `password = 'it''s'`, `password=x`,
/// `?password=x&...`.
std::string mask_key_values(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    if (in[i] != '=') {
      out += in[i++];
      continue;
    }
    // The keyword before '=' (spaces allowed between them in a conninfo).
    size_t k = out.size();
    while (k > 0 && is_space(out[k - 1]))
      --k;
    out += in[i++];
    if (!ends_with_password_key(out, k))
      continue;
    while (i < in.size() && is_space(in[i]))
      out += in[i++];
    if (i < in.size() && (in[i] == '\'' || in[i] == '"')) {
      char quote = in[i++];
      while (i < in.size() && in[i] != quote)
        i += in[i] == '\\' ? 2 : 1;
      i = std::min(i + 1, in.size());
      out += quote;
      out += mask;
      out += quote;
    } else {
      while (i < in.size() && !is_space(in[i]) && in[i] != '&')
        ++i;
      out += mask;
    }
  }
  return out;
}

/// Masks the password of a URL's user information: `scheme://user:pw@`.
std::string mask_urls(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    auto scheme_end = in.find("://", i);
    if (scheme_end == std::string_view::npos) {
      out.append(in.substr(i));
      break;
    }
    auto auth = scheme_end + 3;
    out.append(in.substr(i, auth - i));
    // The authority ends at '/', '?', '#' or white space; its user
    // information at the last '@' within it.
    size_t end = auth;
    while (end < in.size() && in[end] != '/' && in[end] != '?'
           && in[end] != '#' && !is_space(in[end]))
      ++end;
    auto authority = in.substr(auth, end - auth);
    auto at = authority.rfind('@');
    auto colon = at == std::string_view::npos ? std::string_view::npos
                                               : authority.find(':');
    if (colon != std::string_view::npos && colon < at) {
      out.append(authority.substr(0, colon + 1));
      out += mask;
      out.append(authority.substr(at));
    } else {
      out.append(authority);
    }
    i = end;
  }
  return out;
}

} // namespace

bool may_hold_secret(std::string_view text) {
  if (text.find("://") != std::string_view::npos)
    return true;
  for (size_t i = 0; i + 8 <= text.size(); ++i)
    if (lower(text[i]) == 'p' && ends_with_password_key(text, i + 8))
      return true;
  return false;
}

std::string mask_secrets(std::string_view text) {
  if (!may_hold_secret(text))
    return std::string{text};
  return mask_urls(mask_key_values(text));
}

} // namespace flowmatch
