"""An application's use of Redis through redis-py, against one Redraft node.

Usage: app.py PORT LABEL. Exits 0 and prints OK when every step behaved as on Redis; a failed
assertion exits non-zero with the step. Keys are prefixed with LABEL so runs do not collide.
"""

import sys
import time

import redis

port, label = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
other = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
k = lambda name: f"{label}:{name}"

# A cache entry with a time to live, the way most applications write one.
assert r.set(k("cache:user:1"), "alice", ex=60) is True
assert r.get(k("cache:user:1")) == "alice"
assert 55 <= r.ttl(k("cache:user:1")) <= 60, r.ttl(k("cache:user:1"))
assert r.setex(k("session:abc"), 30, "token") is True
assert r.expire(k("session:abc"), 120) is True
assert 115 <= r.ttl(k("session:abc")) <= 120
assert r.persist(k("session:abc")) is True and r.ttl(k("session:abc")) == -1
assert r.getex(k("session:abc"), px=90_000) == "token" and 85_000 <= r.pttl(k("session:abc")) <= 90_000
assert r.set(k("short"), "v", px=150) is True
deadline = time.monotonic() + 10
while r.get(k("short")) is not None:
    assert time.monotonic() < deadline, "a 150 ms key still readable after 10 s"
    time.sleep(0.05)
assert r.exists(k("short")) == 0 and r.ttl(k("short")) == -2

# A session store in a hash.
assert r.hset(k("sess:1"), mapping={"user": "alice", "visits": "1"}) == 2
assert r.hincrby(k("sess:1"), "visits", 2) == 3
assert r.hgetall(k("sess:1")) == {"user": "alice", "visits": "3"}
assert r.expire(k("sess:1"), 600) is True and 595 <= r.ttl(k("sess:1")) <= 600
assert r.hget(k("sess:1"), "user") == "alice" and r.hexists(k("sess:1"), "nope") is False
assert r.hdel(k("sess:1"), "user") == 1 and r.hlen(k("sess:1")) == 1
assert dict(r.hscan_iter(k("sess:1"))) == {"visits": "3"}
try:
    r.get(k("sess:1"))
    raise AssertionError("GET of a hash did not fail")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), e

# Tags in sets.
assert r.sadd(k("tags:a"), "x", "y", "z") == 3 and r.sadd(k("tags:b"), "y", "z", "w") == 3
assert r.smembers(k("tags:a")) == {"x", "y", "z"}
assert r.sinter(k("tags:a"), k("tags:b")) == {"y", "z"}
assert r.sismember(k("tags:a"), "x") and r.scard(k("tags:b")) == 3

# A work queue on a list.
assert r.rpush(k("queue"), "job1", "job2", "job3") == 3
assert r.lpop(k("queue")) == "job1" and r.llen(k("queue")) == 2
assert r.lrange(k("queue"), 0, -1) == ["job2", "job3"]
assert r.lmove(k("queue"), k("working"), "LEFT", "RIGHT") == "job2"
assert r.brpop([k("queue")], timeout=1) == (k("queue"), "job3")
assert r.blpop([k("queue")], timeout=0.1) is None

# A worker blocked on an empty queue gets the next job pushed.
import threading

taken = []
worker = threading.Thread(target=lambda: taken.append(other.blpop([k("jobs")], timeout=20)))
worker.start()
deadline = time.monotonic() + 10
while r.info("clients")["blocked_clients"] < 1:
    assert time.monotonic() < deadline, "the worker never blocked"
    time.sleep(0.02)
assert r.rpush(k("jobs"), "job4") == 1
worker.join(20)
assert taken == [(k("jobs"), "job4")], taken
assert r.llen(k("jobs")) == 0

# A leaderboard on a sorted set.
assert r.zadd(k("board"), {"alice": 10, "bob": 20, "carol": 15}) == 3
assert r.zincrby(k("board"), 12.5, "alice") == 22.5
assert r.zrevrange(k("board"), 0, 1, withscores=True) == [("alice", 22.5), ("bob", 20.0)]
assert r.zrank(k("board"), "carol") == 0 and r.zscore(k("board"), "bob") == 20.0
assert r.zrangebyscore(k("board"), 15, "+inf") == ["carol", "bob", "alice"]
assert r.zpopmin(k("board")) == [("carol", 15.0)]

# redis-py's default pipeline is a MULTI/EXEC transaction.
with r.pipeline() as pipe:
    pipe.set(k("counter"), 1).incrby(k("counter"), 41).get(k("counter"))
    assert pipe.execute() == [True, 42, "42"]

# Optimistic locking: WATCH, read, MULTI, write, EXEC; retried by redis-py on conflict.
def double_plus_one(pipe):
    value = int(pipe.get(k("counter")))
    pipe.multi()
    pipe.set(k("counter"), value * 2 + 1)

r.transaction(double_plus_one, k("counter"))
assert r.get(k("counter")) == "85"
with r.pipeline() as pipe:
    pipe.watch(k("counter"))
    other.set(k("counter"), "changed")
    pipe.multi()
    pipe.set(k("counter"), "mine")
    try:
        pipe.execute()
        raise AssertionError("EXEC ran although a watched key changed")
    except redis.WatchError:
        pass
assert r.get(k("counter")) == "changed"

# Iterating the keyspace.
with r.pipeline(transaction=False) as pipe:
    for i in range(300):
        pipe.set(k(f"scan:{i}"), i)
    pipe.execute()
found = set(r.scan_iter(match=k("scan:*"), count=40))
assert found == {k(f"scan:{i}") for i in range(300)}, len(found)
assert sorted(r.keys(k("scan:1?"))) == sorted(k(f"scan:{i}") for i in range(10, 20))
assert r.type(k("scan:1")) == "string"
assert r.rename(k("scan:1"), k("renamed")) is True and r.get(k("renamed")) == "1"
assert r.unlink(k("renamed"), k("nope")) == 1
print("OK")
