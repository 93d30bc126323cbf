#!/usr/bin/env bash
# Installs what the end-to-end browser test needs: Debian's Chromium and the
# npm packages pinned in package-lock.json. Playwright's own browser download
# is never used (the test drives /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends chromium
fi

# Playwright must not try to fetch browsers of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
