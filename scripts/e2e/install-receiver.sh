#!/usr/bin/env bash
# The independent Standard Webhooks verifier of the e2e receiver: the
# reference Python library in a small venv in the cache. Prints the venv.
exec "$(dirname "$0")/install-venv.sh" receiver "standardwebhooks==1.*"
