#!/usr/bin/env bash
# Generates the Check runner for one module: every tests/unit/<mod>/check_<name>.c defines
# `Suite *suite_<name>(void)`; this main runs them all and exits non-zero on any failure.
set -euo pipefail
mod=$1; shift
names=()
for f in "$@"; do b=$(basename "$f" .c); names+=("${b#check_}"); done
echo '#include <check.h>'
echo '#include <stdlib.h>'
for n in "${names[@]}"; do echo "Suite *suite_$n(void);"; done
echo 'int main(void) {'
echo "    SRunner *sr = srunner_create(NULL);"
for n in "${names[@]}"; do echo "    srunner_add_suite(sr, suite_$n());"; done
echo "    srunner_set_tap(sr, NULL);"
echo "    srunner_run_all(sr, CK_NORMAL);"
echo "    int failed = srunner_ntests_failed(sr);"
echo "    srunner_free(sr);"
echo "    return failed ? EXIT_FAILURE : EXIT_SUCCESS;"
echo '}'
