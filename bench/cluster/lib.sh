# Sourced by bench/cluster/run and bench/cluster/ab: one private Redis, and callgate nodes
# on it, each configured from callgate.toml.in (DATABASE=1: journaled to PostgreSQL too; FALLBACK=1: the pool on local_fallback),
# stopped (and $tmp removed) at exit.
# Needs $tmp (a scratch directory) set by the caller.
port=7795
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT

redis_up() { # starts the Redis every node shares (nothing on disk); REDIS_ARGS adds options
  redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no ${REDIS_ARGS:-} >/dev/null &
  pids+=($!)
  until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.05; done
}

# With DATABASE=1 the nodes journal to PostgreSQL ([storage] database): a database of the
# run's own on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped at exit.
database=""
if [ "${DATABASE:-0}" = 1 ]; then
  dbname="cgbench_$$"
  createdb -h 127.0.0.1 -U postgres "$dbname"
  database="postgres://postgres@127.0.0.1:5432/$dbname"
  trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; dropdb -h 127.0.0.1 -U postgres --if-exists "$dbname"; rm -rf "$tmp"' EXIT
fi

node_up() { # binary domain listen-port: starts a node, returns once /healthz answers
  sed -e "s#@REDIS@#redis://127.0.0.1:$port/#" -e "s#@DOMAIN@#$2#" bench/cluster/callgate.toml.in >"$tmp/$2.toml"
  if [ -n "$database" ]; then
    sed -i "s#^domain = .*#&\ndatabase = \"$database\"#" "$tmp/$2.toml"
  fi
  if [ "${FALLBACK:-0}" = 1 ]; then  # the pool on local_fallback, three nodes sharing it
    sed -i "s#^domain = .*#&\non_redis_unavailable = \"local_fallback\"\nnodes = 3#" "$tmp/$2.toml"
  fi
  RUST_LOG=warn "$1" serve --config "$tmp/$2.toml" --listen "127.0.0.1:$3" --data-dir "$tmp/$2-$3" >/dev/null 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$3/healthz" >/dev/null; do sleep 0.05; done
}
