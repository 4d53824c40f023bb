#!/bin/sh
# A stand-in for real work: print a line, sleep WORK_SECONDS (default 0.3), exit 0.
# For the tests: with RECORD set, append "start JOB TIME" and "end JOB TIME" to that file;
# the job named by FAIL exits 1.
if [ -n "$RECORD" ]; then echo "start $ORCHESTRATE_JOB $(date +%s.%N)" >> "$RECORD"; fi
echo "$ORCHESTRATE_JOB: working"
sleep "${WORK_SECONDS:-0.3}"
if [ -n "$RECORD" ]; then echo "end $ORCHESTRATE_JOB $(date +%s.%N)" >> "$RECORD"; fi
if [ "$ORCHESTRATE_JOB" = "$FAIL" ]; then echo "$ORCHESTRATE_JOB: failed on purpose" >&2; exit 1; fi
exit 0
