#include "base64.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>

namespace artifact {

std::string Base64Encode(const unsigned char* data, size_t n) {
  if (n > INT_MAX / 2) return {};
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

std::string Base64Decode(const std::string& in) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > INT_MAX / 2) return {};
  std::string out(in.size() / 4 * 3, '\0');
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (len < 0) {
    OPENSSL_cleanse(out.data(), out.size());
    return {};
  }
  // EVP_DecodeBlock counts the bytes of the padding as zeros.
  size_t pad = 0;
  if (in[in.size() - 1] == '=') ++pad;
  if (in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(len) - pad);
  return out;
}

}  // namespace artifact
