#!/bin/bash
# Supervise HAProxy (master-worker) and discoveryd under tini (PID 1). When either exits, stop
# the other and exit non-zero so the orchestrator restarts the container; SIGTERM stops both
# and exits with discoveryd's status; SIGHUP makes discoveryd re-read its config.
# With arguments, runs them instead (e.g. `docker run IMAGE discoveryd check-config ...`).
set -euo pipefail

CONFIG=${DISCOVERYD_CONFIG:-/etc/discoveryd/discoveryd.yaml}
HAPROXY_CFG=${HAPROXY_CFG:-/etc/haproxy/haproxy.cfg}
HAPROXY_RUN=${HAPROXY_RUN:-/run/haproxy}
BOOTSTRAP_CFG=${BOOTSTRAP_CFG:-/usr/share/discoveryd/haproxy-bootstrap.cfg}

if [ -n "${DISCOVERYD_CONFIG_YAML:-}" ]; then
  printf '%s\n' "$DISCOVERYD_CONFIG_YAML" > "$CONFIG"
fi
if [ $# -gt 0 ]; then
  exec "$@"
fi
discoveryd check-config "$CONFIG" > /dev/null

mkdir -p "$HAPROXY_RUN" "$(dirname "$HAPROXY_CFG")"
# Until discoveryd installs its first render, HAProxy runs a minimal config of ours (Debian's
# stock one expects syslog and a chroot).
if ! grep -q marathon_http_in "$HAPROXY_CFG" 2>/dev/null; then
  cp "$BOOTSTRAP_CFG" "$HAPROXY_CFG"
fi

# -W master-worker; -S the master CLI that discoveryd's reload_command writes "reload" to.
haproxy -W -S "$HAPROXY_RUN/master.sock" -f "$HAPROXY_CFG" &
haproxy_pid=$!
for _ in $(seq 200); do
  [ -S "$HAPROXY_RUN/master.sock" ] && break
  kill -0 "$haproxy_pid" 2>/dev/null || { echo "entrypoint: haproxy did not start" >&2; exit 1; }
  sleep 0.1
done

discoveryd run --config "$CONFIG" &
discoveryd_pid=$!

stopping=""
trap 'stopping=1; kill -TERM "$discoveryd_pid" 2>/dev/null || true' TERM INT
trap 'kill -HUP "$discoveryd_pid" 2>/dev/null || true' HUP

# `wait -n` also returns when a trapped signal arrives: loop until a child has really exited.
while [ -z "$stopping" ] && kill -0 "$haproxy_pid" 2>/dev/null \
      && kill -0 "$discoveryd_pid" 2>/dev/null; do
  wait -n "$haproxy_pid" "$discoveryd_pid" || true
done

status=0
kill -TERM "$discoveryd_pid" 2>/dev/null || true
wait "$discoveryd_pid" 2>/dev/null || status=$?
kill -TERM "$haproxy_pid" 2>/dev/null || true
wait "$haproxy_pid" 2>/dev/null || true
if [ -z "$stopping" ] && [ "$status" -eq 0 ]; then
  status=1   # a child died on its own: never report success
fi
exit "$status"
