# Shared by the benchmark scripts (sourced, not run).

# plain_http_env: the servers a benchmark starts read CHECKIN_* from the
# environment; they must serve plain HTTP without API keys, whatever the
# shell has set for a node of its own.
plain_http_env() {
  unset CHECKIN_HTTP_API_KEYS CHECKIN_HTTP_API_KEYS_FILE CHECKIN_HTTP_TLS_CERT_FILE CHECKIN_HTTP_TLS_KEY_FILE \
    CHECKIN_API_KEY CHECKIN_TLS_CA_FILE CHECKIN_HTTP_DRAIN_DELAY CHECKIN_BACKUP_DIR
}

# listening_addr LOG PID: prints the address a server started with
# --http.addr=127.0.0.1:0 listens on, read from its log once it says so.
# Returns 1 (after showing the log's tail) when the server exits first or
# does not listen within 60 s.
listening_addr() {
  local log=$1 pid=$2 addr
  for _ in $(seq 1 600); do
    addr=$(grep -m1 '"msg":"http server listening"' "$log" 2>/dev/null | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' || true)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the server exited at start:" >&2
      tail -5 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "the server did not listen within 60s:" >&2
  tail -5 "$log" >&2
  return 1
}
