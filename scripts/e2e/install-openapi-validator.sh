#!/usr/bin/env bash
# The independent OpenAPI validator of the admin API's description
# (openapi-spec-validator) in a small venv in the cache. Prints the venv.
exec "$(dirname "$0")/install-venv.sh" openapi-validator "openapi-spec-validator==0.7.*"
