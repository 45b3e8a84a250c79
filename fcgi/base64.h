// Standard base64 (RFC 4648, with padding, no line breaks) over OpenSSL's
// EVP_EncodeBlock/EVP_DecodeBlock: for {SSHA} hashes, passwords and HTTP
// basic credentials.
#pragma once

#include <cstddef>
#include <string>

namespace artifact {

std::string Base64Encode(const unsigned char* data, size_t n);

// The decoded bytes; empty for empty or invalid input (length not a multiple
// of 4, a byte outside the alphabet). What it decoded before finding the
// input invalid is wiped, as the input may be a secret.
std::string Base64Decode(const std::string& in);

}  // namespace artifact
