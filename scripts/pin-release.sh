#!/usr/bin/env bash
# Pins a release's binaries in action.yml, or checks that they are pinned (docs/releasing.md).
#
#   scripts/pin-release.sh VERSION [--sums FILE] [--commit SHA] [--action FILE]
#       Writes into action.yml (or FILE) the release VERSION, the commit its archives were
#       built from, and the SHA-256 of each of the four archives, between the
#       `# >>> release pins` and `# <<< release pins` lines. Without --sums and --commit they
#       are read from the draft GitHub release VERSION with `gh` (its SHA256SUMS asset and its
#       target commit). The action then runs only archives with those SHA-256s, whatever the
#       release holds later, so a commit pin of the action pins the binary.
#
#   scripts/pin-release.sh --clear [--action FILE]
#       Empties the block: no release pinned, the action builds its own commit from source.
#
#   scripts/pin-release.sh --verify VERSION --dir DIR [--action FILE] [--git]
#       Checks that action.yml pins VERSION and that each archive in DIR
#       (runproof-VERSION-<target>.tar.gz, as downloaded from the release) has the pinned
#       SHA-256, and that DIR/SHA256SUMS, when present, agrees. With --git, also that the
#       pinned commit is an ancestor of HEAD and that HEAD differs from it in action.yml only,
#       so the archives were built from the source being released.
set -euo pipefail

TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
RELEASE_TAG='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'

die() {
  echo "pin-release: $*" >&2
  exit 1
}
sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

mode=pin
version=
sums=
commit=
dir=
git_checks=false
action=$(cd "$(dirname "$0")/.." && pwd)/action.yml
while (($# > 0)); do
  case $1 in
    --verify) mode=verify ;;
    --clear) mode=clear ;;
    --sums) sums=${2:?--sums needs a file}; shift ;;
    --commit) commit=${2:?--commit needs a commit id}; shift ;;
    --action) action=${2:?--action needs a file}; shift ;;
    --dir) dir=${2:?--dir needs a directory}; shift ;;
    --git) git_checks=true ;;
    -*) die "unknown option $1" ;;
    *)
      [[ -z $version ]] || die "one version only"
      version=$1
      ;;
  esac
  shift
done
[[ $mode == clear || $version =~ $RELEASE_TAG ]] || die "the version must be a release tag like v1.2.3, not '$version'"
[[ -f $action ]] || die "$action does not exist"
markers() {
  [[ $(grep -c '# >>> release pins' "$action") == 1 && $(grep -c '# <<< release pins' "$action") == 1 ]] ||
    die "$action must have one '# >>> release pins' line and one '# <<< release pins' line"
}
markers

if [[ $mode == verify ]]; then
  [[ -d $dir ]] || die "--verify needs --dir DIR with the release's archives"
  # The keys as action.yml has them, between the markers.
  pins=$(awk '/# >>> release pins/ { f = 1; next } /# <<< release pins/ { f = 0 } f' "$action")
  pinned_version=$(sed -n 's/^ *RUNPROOF_PINNED_VERSION: *//p' <<<"$pins" | tr -d "'\"")
  pinned_commit=$(sed -n 's/^ *RUNPROOF_PINNED_COMMIT: *//p' <<<"$pins" | tr -d "'\"")
  [[ $pinned_version == "$version" ]] || die "action.yml pins '${pinned_version}', not $version: run scripts/pin-release.sh $version"
  [[ $pinned_commit =~ ^[0-9a-f]{40}$ ]] || die "action.yml pins no commit for $version"
  for target in "${TARGETS[@]}"; do
    expected=$(sed -n "s/^ *$target=\([0-9a-f]\{64\}\)\$/\1/p" <<<"$pins")
    [[ -n $expected ]] || die "action.yml pins no SHA-256 for $target"
    archive=$dir/runproof-$version-$target.tar.gz
    [[ -f $archive ]] || die "$archive is missing"
    actual=$(sha256_of "$archive")
    [[ $actual == "$expected" ]] || die "$archive has SHA-256 $actual, but action.yml pins $expected"
    if [[ -f $dir/SHA256SUMS ]]; then
      listed=$(awk -v f="runproof-$version-$target.tar.gz" '$2 == f || $2 == ("*" f) { print $1; exit }' "$dir/SHA256SUMS")
      [[ $listed == "$expected" ]] || die "SHA256SUMS lists '$listed' for $target, but action.yml pins $expected"
    fi
    echo "ok $target $expected"
  done
  if [[ $git_checks == true ]]; then
    git merge-base --is-ancestor "$pinned_commit" HEAD ||
      die "the pinned commit $pinned_commit is not an ancestor of $(git rev-parse HEAD)"
    changed=$(git diff --name-only "$pinned_commit" HEAD)
    [[ -z $changed || $changed == action.yml ]] ||
      die "HEAD differs from the commit the archives were built from in more than action.yml: $(tr '\n' ' ' <<<"$changed")"
    echo "ok HEAD is $pinned_commit plus action.yml"
  fi
  exit 0
fi

# --- pin ------------------------------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Comment lines in the block stay; the keys are replaced, at the markers' indentation.
write_block() { # lines...
  local indent
  indent=$(sed -n 's/^\( *\)# >>> release pins.*/\1/p' "$action")
  PINS=$(printf "${indent//%/%%}%s\n" "$@") awk '
    /# >>> release pins/ { print; inside = 1; next }
    /# <<< release pins/ { print ENVIRON["PINS"]; print; inside = 0; next }
    inside && !/^ *#/ { next }
    { print }
  ' "$action" >"$tmp/action.yml"
  cat "$tmp/action.yml" >"$action"
}
if [[ $mode == clear ]]; then
  write_block "RUNPROOF_PINNED_VERSION: ''" "RUNPROOF_PINNED_COMMIT: ''" "RUNPROOF_PINNED_SHA256: ''"
  echo "no release pinned in $action"
  exit 0
fi
if [[ -z $sums ]]; then
  command -v gh >/dev/null 2>&1 || die "gh is needed to read the draft release (or give --sums and --commit)"
  gh release download "$version" --pattern SHA256SUMS --dir "$tmp" || die "cannot download SHA256SUMS of the release $version"
  sums=$tmp/SHA256SUMS
fi
if [[ -z $commit ]]; then
  command -v gh >/dev/null 2>&1 || die "gh is needed to read the draft release (or give --commit)"
  commit=$(gh release view "$version" --json targetCommitish --jq .targetCommitish) ||
    die "cannot read the target commit of the release $version"
fi
[[ $commit =~ ^[0-9a-f]{40}$ ]] || die "the release must target a commit id, not '$commit'"
[[ -f $sums ]] || die "$sums does not exist"

lines=("RUNPROOF_PINNED_VERSION: $version" "RUNPROOF_PINNED_COMMIT: $commit" "RUNPROOF_PINNED_SHA256: |")
for target in "${TARGETS[@]}"; do
  file=runproof-$version-$target.tar.gz
  hash=$(awk -v f="$file" '$2 == f || $2 == ("*" f) { print $1; exit }' "$sums")
  [[ $hash =~ ^[0-9a-f]{64}$ ]] || die "$sums has no SHA-256 for $file"
  lines+=("  $target=$hash")
done

write_block "${lines[@]}"
echo "pinned $version (built from $commit) in $action:"
printf '  %s\n' "${lines[@]}"
