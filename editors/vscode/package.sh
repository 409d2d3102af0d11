#!/usr/bin/env sh
# Packages the extension as DIR/provflow.vsix (default: this folder), with the dependencies
# pinned in package-lock.json:
#
#   editors/vscode/package.sh [DIR]
#   code --install-extension DIR/provflow.vsix
#
# Installs node_modules from the lockfile first when they are missing (npm's cache makes that
# work offline once it has been fetched). Needs node 20 or later and npm.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -d "$here/node_modules/@vscode/vsce" ] || [ ! -d "$here/node_modules/vscode-languageclient" ]; then
  npm ci --prefix "$here" --prefer-offline --no-audit --no-fund --loglevel=error
fi
cd "$here"
# The project's source repository is not named in package.json (there is no public address to
# give); --allow-missing-repository says so instead of asking on the terminal.
exec npx --no-install vsce package --allow-missing-repository --out "$out/provflow.vsix"
