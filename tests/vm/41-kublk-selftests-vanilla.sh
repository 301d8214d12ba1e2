#!/bin/sh
# The same kublk selftests on unpatched 7.2: the reference our kernel must match.
# kernel: vanilla
# timeout: 3000
exec sh tests/vm/40-kublk-selftests.sh
