#!/usr/bin/env bash
# Downloads (does not install) the Debian packages a bare GPU machine lacks -- cmocka, cJSON, xxHash, PCRE2
# headers -- into .deps/ (git-ignored), for tests/gpu/run.sh to unpack there into /tmp/deps (never into /).
# Run on the development machine (Debian 12, network to its archive), then carry .deps to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .deps
cd .deps
apt-get download libcmocka0 libcmocka-dev libcjson1 libcjson-dev libxxhash0 libxxhash-dev libpcre2-8-0 libpcre2-dev
ls -1 *.deb
