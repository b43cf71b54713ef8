#!/usr/bin/env bash
# Make sure the servers the tests talk to are up on 127.0.0.1: start the ones
# that are installed but stopped, and say exactly what is missing otherwise.
set -u
missing=()

wait_for() {  # name, command; up to 30 s
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $1 did not come up within 30 s" >&2
  return 1
}

if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  :
elif command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_for PostgreSQL "pg_isready -h 127.0.0.1 -p 5432 -q" || missing+=("PostgreSQL (failed to start)")
else
  missing+=("PostgreSQL server (apt-get install -y postgresql)")
fi

if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  :
elif command -v redis-server >/dev/null; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis "redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG" || missing+=("Redis (failed to start)")
else
  missing+=("Redis server (apt-get install -y redis-server)")
fi

rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if rabbit_up; then
  :
elif command -v rabbitmq-server >/dev/null; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ rabbit_up || missing+=("RabbitMQ (failed to start)")
else
  missing+=("RabbitMQ server (apt-get install -y rabbitmq-server)")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "services: the tests need these on 127.0.0.1 and they are missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "services: PostgreSQL, Redis and RabbitMQ are up"
