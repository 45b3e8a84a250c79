// A tar archive read as a stream, entry by entry, for the tree upload
// (tree_upload.h): POSIX ustar headers, with a pax extended header's `path`
// record or a GNU long name ('L') for names longer than ustar holds, so that
// GNU tar's default format, --format=ustar and --format=posix all work.
// Only regular files and directories are entries; a symlink, a hard link, a
// device or a FIFO is refused (400) by its name, as is anything malformed: a
// bad checksum, a size that is not octal, a stream that ends inside an entry.
// Nothing is held in memory beyond one header and the current name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "result.h"

namespace artifact {

// Reads up to `n` bytes into `buf`: how many, 0 at the end of the stream.
using ReadFunction = std::function<Result<size_t>(char* buf, size_t n)>;

struct TarEntry {
  std::string path;  // as the archive names it, e.g. "./logs/build.log"
  bool directory = false;
  uint64_t size = 0;  // of a file's data; 0 for a directory
};

class TarReader {
 public:
  explicit TarReader(ReadFunction read) : read_(std::move(read)) {}

  // The next entry, after skipping what is left of the current one's data;
  // nullopt at the archive's end (its zero blocks, or the end of the stream
  // at a header boundary).
  Result<std::optional<TarEntry>> Next();
  // Up to `n` bytes of the current entry's data; 0 when it is all read.
  Result<size_t> ReadData(char* buf, size_t n);

 private:
  Status ReadExact(char* buf, size_t n);
  Status Skip(uint64_t n);
  // The data of a pax or GNU long-name header, at most `max` bytes.
  Result<std::string> ReadMeta(uint64_t size, size_t max);

  ReadFunction read_;
  uint64_t left_ = 0;     // data bytes of the current entry not yet read
  uint64_t padding_ = 0;  // zero bytes after them, up to the next block
};

}  // namespace artifact
