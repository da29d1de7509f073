#!/usr/bin/env bash
# Start the local services the tests use, when their binaries exist and they are not running.
# Missing binaries are not an error here: the tests skip (or, under CI=true, fail) by themselves.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 1883 && command -v mosquitto >/dev/null 2>&1; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  redis-server --daemonize yes --port 6379 --save "" --appendonly no || true
fi
for _ in $(seq 1 50); do port_open 5432 && break; sleep 0.2; done
exit 0
