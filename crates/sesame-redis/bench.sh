#!/usr/bin/env bash
# The Redis limiter next to redis-benchmark of the same Lua script, on this machine, in one run.
#
#   crates/sesame-redis/bench.sh            # REDIS_HOST, REDIS_PORT, N, C, CHECKS to change
#
# redis-benchmark measures the ceiling: one EVALSHA of src/gcra.lua with 4 keys, sent by a C
# client with no work between requests. The example measures what Sesame gets: the same script
# through RedisLimiter::check (argument building, the multiplexed connection, decoding, the
# decision). Both take the allowed-and-write path on all four buckets.
set -euo pipefail
cd "$(dirname "$0")"

host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
n=${N:-100000}
c=${C:-32}
checks=${CHECKS:-50000}

if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
    echo "bench.sh: no Redis answers at $host:$port" >&2
    exit 1
fi

echo "building the example (release)..."
cargo build --quiet --release -p sesame-redis --example limiter_bench

# -x sends the file byte for byte, so the SHA is the one RedisLimiter computes.
sha=$(redis-cli -h "$host" -p "$port" -x SCRIPT LOAD < src/gcra.lua)
tag="{bench-rb-$$-$(date +%s):rl}"
now=$(date +%s)
# Per rule: window 3600 s in ns, take = one interval of a 1e9-per-hour bucket (3600 ns), write.
rule_args=()
for _ in 1 2 3 4; do rule_args+=(3600000000000 3600 1); done

echo "redis-benchmark: $n x EVALSHA $sha (4 keys), $c clients..."
rb_out=$(redis-benchmark -h "$host" -p "$port" -n "$n" -c "$c" -q \
    EVALSHA "$sha" 4 "$tag:ip" "$tag:identifier" "$tag:client" "$tag:country" "$now" 0 "${rule_args[@]}" 2>&1)
rb=$(printf '%s\n' "$rb_out" | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
printf '%s\n' "$rb_out" | tr '\r' '\n' | grep 'requests per second' | tail -1

echo "limiter_bench: $checks checks, $c concurrent..."
lb_out=$(REDIS_URL="redis://$host:$port" cargo run --quiet --release -p sesame-redis --example limiter_bench -- "$checks" "$c")
printf '%s\n' "$lb_out" | grep -v '^checks_per_sec='
lb=$(printf '%s\n' "$lb_out" | sed -n 's/^checks_per_sec=//p')

awk -v rb="$rb" -v lb="$lb" 'BEGIN {
    printf "redis-benchmark EVALSHA: %.0f/s   limiter: %.0f checks/s   ratio limiter/redis-benchmark: %.2f\n", rb, lb, lb / rb
}'
