#!/usr/bin/env bash
# What a test run must not leave behind: daemons the tests start, nspawn guests,
# loop devices, the lab's bridge, mounts of temp or lab directories.
#   leftovers.sh snapshot FILE   record what exists before the run
#   leftovers.sh check FILE      list what the run added; exit 1 if anything
set -euo pipefail
mode=${1:?snapshot|check}
file=${2:?state file}
state() {
  # daemons by name (the peers the tests start, and our own runtime)
  pgrep -a -x 'slapd|spamd|clamd|dnsmasq|postgres|dovecot|master|heartbeat|systemd-nspawn|sshd' 2>/dev/null |
    awk '{print "proc " $1 " " $2}' || true
  pgrep -a -f 'mailinfra\.mjs serve' 2>/dev/null | awk '{print "proc " $1 " mailinfra"}' || true
  losetup -n -O NAME,BACK-FILE 2>/dev/null | awk '{print "loop " $1 " " $2}' || true
  ip -o link show type bridge 2>/dev/null | awk -F': ' '{print "bridge " $2}' || true
  awk '$2 ~ /^\/(tmp|run\/mailinfra|var\/lib\/machines)/ || $2 ~ /\.lab-state/ {print "mount " $2}' /proc/mounts
}
case "$mode" in
  snapshot) state | sort > "$file" ;;
  check)
    # daemons get a moment to finish exiting after their tests' afterAll
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      added=$(comm -13 "$file" <(state | sort))
      [ -z "$added" ] && exit 0
      sleep 1
    done
    echo "the test run left these behind:" >&2
    echo "$added" >&2
    exit 1
    ;;
  *) echo "usage: leftovers.sh snapshot|check FILE" >&2; exit 2 ;;
esac
