#!/usr/bin/env bash
# Writes the manual page artifact-token(1) from the binary's own --help texts,
# so the page says what the program says and cannot drift from it.
#   scripts/make-man.sh BINARY VERSION OUT
set -euo pipefail
bin=$1 version=$2 out=$3

# Text to roff: backslashes doubled, a leading '.' or "'" made literal.
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

commands=$("$bin" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
[[ -n $commands ]] || { echo "make-man: no commands in $bin --help" >&2; exit 1; }
{
  printf '.TH ARTIFACT-TOKEN 1 "" "artifact-repository %s" "User Commands"\n' "$version"
  printf '.SH NAME\nartifact-token \\- issue, revoke and expire the upload tokens of an artifact repository\n'
  printf '.SH SYNOPSIS\n.B artifact-token\n.I COMMAND\n[\\fIOPTIONS\\fR]\n'
  printf '.SH DESCRIPTION\n.nf\n'
  "$bin" --help | roff
  printf '.fi\n.SH COMMANDS\n'
  for c in $commands; do
    printf '.SS %s\n.nf\n' "$c"
    # The configuration keys are the same for every command: said once, below.
    "$bin" "$c" --help | awk '/^Configuration \(file/ { exit } { print }' | roff
    printf '.fi\n'
  done
  printf '.SH CONFIGURATION\n.nf\n'
  "$bin" serve --help | awk '/^Configuration \(file/ { on = 1 } on { print }' | roff
  printf '.fi\n'
  printf '.SH FILES\n.TP\n/etc/artifact-repository/artifact-token.conf\nthe configuration\n'
  printf '.TP\n/etc/artifact-repository/masters\nthe masters'"'"' credentials (htpasswd \\-B)\n'
  printf '.TP\n/var/lib/artifact-repository/tokens, /var/lib/artifact-repository/artifacts\nthe two volumes\n'
  printf '.SH SEE ALSO\n.BR htpasswd (1),\n.BR nginx (8),\n.BR spawn-fcgi (1);\n'
  printf '/usr/share/doc/artifact-repository\n'
} >"$out.tmp"
mv "$out.tmp" "$out"
