#!/usr/bin/env bash
# test_fleet.sh on the LMDB store: one llmcap-server with --data (no second server to kill).
LLMCAP_TEST_DB=lmdb exec bash "$(dirname "$0")/test_fleet.sh"
