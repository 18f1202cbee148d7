#!/usr/bin/env bash
# What `make lint` would still report once `ruff format` has run on every file, measured on a
# throw-away copy so nobody's working files are touched.
#
#   tools/lint_report.sh            # copy of the working tree (tracked + untracked, not ignored)
#   tools/lint_report.sh HEAD       # copy of a commit instead (git worktree)
#
# Prints: files `ruff format` would change, then `ruff check` errors per rule and per file (after
# formatting), then what is left per file and rule once `ruff check --fix` has also run (the hand
# work). Exit status 0 when nothing is left, 1 otherwise.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
ruff="${RUFF:-$repo/.venv/bin/ruff}"
copy="$(mktemp -d /tmp/lint_report.XXXXXX)"
rev="${1:-}"
cleanup() {
    if [ -n "$rev" ]; then git -C "$repo" worktree remove --force "$copy/tree" >/dev/null 2>&1 || true; fi
    rm -rf "$copy"
}
trap cleanup EXIT

if [ -n "$rev" ]; then
    git -C "$repo" worktree add --detach --quiet "$copy/tree" "$rev"
else
    mkdir "$copy/tree"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -C "$copy/tree" -xf -
fi

cd "$copy/tree"
echo "## ruff format: files it would change"
"$ruff" format --check --output-format concise . 2>/dev/null | grep ': unformatted:' \
    | cut -d: -f1 | sort | tee "$copy/unformatted" | sed 's/^/    /' || true
echo "    ($(wc -l < "$copy/unformatted") files)"
"$ruff" format --quiet .
echo "## ruff check after formatting: per rule"
"$ruff" check --statistics --exit-zero . || true
echo "## ruff check after formatting: per file"
"$ruff" check --output-format concise --exit-zero . | grep -E '^[^ ]+:[0-9]+:[0-9]+: ' \
    | cut -d: -f1 | sort | uniq -c | sort -rn || true
echo "## left for hand work after 'ruff check --fix' (safe fixes: import order, unused imports/noqa)"
"$ruff" check --fix --quiet --exit-zero . >/dev/null
"$ruff" check --output-format concise --exit-zero . | grep -E '^[^ ]+:[0-9]+:[0-9]+: ' \
    | awk '{split($1, a, ":"); print a[1], $2}' | sort | uniq -c | sort -k2,2 -k1,1rn || true
"$ruff" check --quiet . >/dev/null
