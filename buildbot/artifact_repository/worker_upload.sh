# shellcheck shell=sh
# The worker's half of UploadArtifacts: POSIX sh, find, awk, sed and curl, no python.
#
# UploadArtifacts runs this as `sh -c <this text> artifact-upload HEADER PUT
# POST BASE CURL [KIND LOCAL QUOTED REMOTE]...` in the step's workdir. Why not python:
# starting python3 on the worker cost 0.05-0.13 s on an idle machine and 0.83 s
# under load (bench-buildbot's floor table), more than curl needs for 32 files. One command, one curl run: no MKCOL pass (a PUT makes the missing
# directories inside the build on this server), no second round trip.
#
#   HEADER  the curl config up to the first upload (written by the master,
#           worker_upload.py: global options, the HEAD check of BASE); it
#           holds the .netrc's path, never a password
#   PUT     the options of a group of PUTs
#   POST    the options of the tree upload (below)
#   BASE    the build's URL, ending in '/', as curl config text (no quotes)
#   CURL    the curl program
#   then per source: KIND 'path' (a file or a directory; a glob was expanded
#   by the worker before), LOCAL its path, QUOTED the same as a curl config
#   string body (backslashes and quotes escaped), REMOTE the remote prefix
#   ('' or 'a/b/', checked by the master).
#
# A file goes to BASE REMOTE <its name>; a directory's regular files (symlinks
# neither followed nor listed) to BASE REMOTE <path below it>. The files of
# directories up to 1 MiB each go in one tar archive, POSTed to BASE REMOTE
# and unpacked by the server (a tree upload, docs/api.md): one request
# instead of one PUT per file, as nginx creates only about 2,500 files a
# second (bench/FINDINGS.md). Larger files and file sources are PUT, with
# "Expect: 100-continue", so that a refused upload is not sent in full
# first, and without a second copy on the server's disk. Every name must
# match the repository's rule [A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254}: a name that
# does not, two files for one name, a missing source or a directory find cannot
# read refuses the whole upload before any request (exit 120, "error: " lines
# on stderr). Names are checked with find's own patterns in the C locale, so a
# name holding a newline, a quote or a backslash never reaches the config.
#
# Output: stderr has one "= URL<TAB>LOCAL" line per PUT file and one
# "=t URL<TAB>LOCAL" line per file in the archive (after the checks), then
# the server's answer to the archive (JSON) and curl's error lines; stdout
# has curl's write-out, "STATUS METHOD URL" per transfer. The exit status is
# curl's. The master reads both (worker_upload.parse).
set -u
LC_ALL=C
export LC_ALL
header=$1 put_options=$2 post_options=$3 base=$4 curl=$5
shift 5

# One line stream for awk: "s<TAB>QUOTED<TAB>REMOTE<TAB>DIR" starts a source
# (DIR: its absolute path, where tar reads a directory's files), then
# "./path" per file up to 1 MiB below a directory, "B./path" per larger one,
# "f<TAB>./name" for a file source, "!text" for a problem.
listing() {
  while [ $# -ge 4 ]; do
    local_path=$2
    case $local_path in
      /*) absolute=$local_path ;;
      *) absolute=$PWD/$local_path ;;
    esac
    printf 's\t%s\t%s\t%s\n' "$3" "$4" "$absolute"
    if [ -d "$local_path" ]; then
      # Pruned at a bad name: what is below it is refused with it.
      ( cd -- "$local_path" && find . ! -name . \
          \( -name '*[!A-Za-z0-9._+~-]*' -o -name '[.~-]*' \) -exec printf '!name %s\n' {} \; -prune \
          -o -type f -size +1048576c -exec printf 'B%s\n' {} + \
          -o -type f -print ) || printf '!cannot list every file below %s\n' "$local_path"
    elif [ -f "$local_path" ]; then
      name=${local_path##*/}
      case $name in
        *[!A-Za-z0-9._+~-]* | [.~-]* | '') printf '!name ./%s\n' "$name" ;;
        *) printf 'f\t./%s\n' "$name" ;;
      esac
    else
      printf '!no such file or directory: %s\n' "$local_path"
    fi
    shift 4
  done
}

config=$(listing "$@" | BASE=$base PUT=$put_options POST=$post_options awk '
  function refuse(text) { problems[++nproblems] = text }
  # `text` with each `c` replaced by `by`, no regular expression involved.
  function escape(text, c, by,    out, i) {
    out = ""
    while ((i = index(text, c)) > 0) { out = out substr(text, 1, i - 1) by; text = substr(text, i + 1) }
    return out text
  }
  /^!name / { refuse("name not allowed: " substr($0, 7)); next }
  /^!/      { refuse(substr($0, 2)); next }
  /^s\t/ {
    split(substr($0, 3), fields, "\t")
    quoted = fields[1]; remote = fields[2]
    absolute = substr($0, 3 + length(quoted) + length(remote) + 2)
    next
  }
  /^f\t\.\// { add(quoted, remote substr($0, 5), 1); next }
  /^B\.\// { add(quoted "/" substr($0, 4), remote substr($0, 4), 1); next }
  /^\.\// {
    if (!add(quoted "/" substr($0, 3), remote substr($0, 3), 0)) next
    # In the archive: its path below its directory, read from there.
    tar_dir[remote substr($0, 3)] = absolute; tar_name[remote substr($0, 3)] = $0
    if (ntar++ == 0) tar_remote = remote
    else if (remote != tar_remote) refuse("directories for different destinations in one upload")
    next
  }
  { refuse("unexpected output of find: " $0) }
  function add(local, name, big,    n, parts, k) {
    n = split(name, parts, "/")
    for (k = 1; k <= n; k++)
      if (parts[k] !~ /^[A-Za-z0-9_+][A-Za-z0-9._+~-]*$/ || length(parts[k]) > 255) {
        refuse("name not allowed: " name); return 0
      }
    if (name in owner) {
      if (owner[name] != local) refuse(owner[name] " and " local " would both be " name)
      return 0
    }
    owner[name] = local; names[++count] = name; large[name] = big; nlarge += big
    return 1
  }
  function put(name,    url) {
    url = ENVIRON["BASE"] name
    # A comment for curl; sed below copies it to stderr in large writes
    # (awk writes to "/dev/stderr" or a pipe line by line: each line a
    # wakeup of the worker process that reads the output of the command).
    print "#= " url "\t" owner[name]
    print "upload-file = \"" owner[name] "\""
    print "url = \"" url "\""
    print "output = \"/dev/null\""
  }
  END {
    if (nproblems == 0 && count == 0) refuse("no files to upload")
    if (nproblems > 0) {
      for (k = 1; k <= nproblems && k <= 20; k++) print "error: " problems[k] > "/dev/stderr"
      if (nproblems > 20) print "error: ... and " (nproblems - 20) " more" > "/dev/stderr"
      exit 3
    }
    if (nlarge < count) {
      archive()
      if (nlarge > 0) print "next"
    }
    if (nlarge > 0) {
      print ENVIRON["PUT"]
      group(1)
    }
  }
  # The tree upload: one POST of the archive tar writes to curl'"'"'s
  # standard input. "#t " lines are tar'"'"'s list of files (-T), each
  # directory'"'"'s --directory= before its names. tar splits an option line
  # into words: the directory is double-quoted, with a backslash before each
  # backslash and quote in it. (The master refuses a newline in a path.)
  function archive(    k, name, dir) {
    print ENVIRON["POST"]
    print "upload-file = \"-\""
    print "url = \"" ENVIRON["BASE"] tar_remote "\""
    for (k = 1; k <= count; k++) {
      name = names[k]
      if (large[name]) continue
      if (tar_dir[name] != dir) {
        dir = tar_dir[name]
        print "#t --directory=\"" escape(escape(dir, "\\", "\\\\"), "\"", "\\\"") "\""
      }
      print "#t " tar_name[name]
      print "#=t " ENVIRON["BASE"] name "\t" owner[name]
    }
  }
  # The first file of each directory first, then the others: the first PUT
  # into a missing directory makes it (the server asks its app), so the
  # parallel PUTs that start together go to different directories instead
  # of all asking to make the same one. Measured with curl alone, parallel
  # 8: 32 files in 9 directories 0.050 s -> 0.033 s, 500 in 61 0.242 -> 0.224 s.
  function group(want_large,    k, dir, seen, sent) {
    for (k = 1; k <= count; k++) {
      if (large[names[k]] != want_large) continue
      dir = names[k]; sub(/[^\/]*$/, "", dir)
      if (!(dir in seen)) { seen[dir] = 1; sent[k] = 1; put(names[k]) }
    }
    for (k = 1; k <= count; k++)
      if (large[names[k]] == want_large && !(k in sent)) put(names[k])
  }') || exit 120

printf '%s\n' "$config" | sed -n 's/^#=/=/p' >&2
tar_list=$(printf '%s\n' "$config" | sed -n 's/^#t //p')
if [ -n "$tar_list" ]; then
  # tar reads its list on its standard input and writes the archive to
  # curl's; curl reads its config from descriptor 3. Names and directories
  # are taken literally (--no-unquote: a backslash is a backslash); a file
  # with several hard links goes as a file each time (the server takes files
  # and directories only).
  printf '%s\n' "$tar_list" |
    tar -c -f - --no-recursion --no-unquote --hard-dereference -T - | "$curl" --config /dev/fd/3 3<<ARTIFACT_CONFIG
$header
$config
ARTIFACT_CONFIG
else
  printf '%s\n%s\n' "$header" "$config" | "$curl" --config -
fi
