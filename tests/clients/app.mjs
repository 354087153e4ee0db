// An application's use of Redis through node-redis and ioredis, against one Redraft node.
//
// Usage: node app.mjs PORT LABEL. Exits 0 and prints OK when every step behaved as on Redis; a
// failed assertion exits non-zero with the step. Keys are prefixed with LABEL.
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import Redis from 'ioredis';

const [port, label] = [Number(process.argv[2]), process.argv[3]];
const k = (name) => `${label}:${name}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitGone(get, key) {
  const deadline = Date.now() + 10_000;
  while ((await get(key)) !== null) {
    assert.ok(Date.now() < deadline, `${key} still readable after 10 s`);
    await sleep(50);
  }
}

async function nodeRedis() {
  const c = createClient({ url: `redis://127.0.0.1:${port}` });
  const other = createClient({ url: `redis://127.0.0.1:${port}` });
  c.on('error', (e) => { throw e; });
  other.on('error', (e) => { throw e; });
  await c.connect();
  await other.connect();
  // A cache with a time to live.
  assert.equal(await c.set(k('nr:cache'), 'alice', { EX: 60 }), 'OK');
  assert.equal(await c.get(k('nr:cache')), 'alice');
  const ttl = await c.ttl(k('nr:cache'));
  assert.ok(ttl > 55 && ttl <= 60, `ttl ${ttl}`);
  assert.equal(await c.set(k('nr:short'), 'v', { PX: 150 }), 'OK');
  await waitGone((key) => c.get(key), k('nr:short'));
  // A session store in a hash.
  assert.equal(await c.hSet(k('nr:sess'), { user: 'alice', visits: '1' }), 2);
  assert.equal(await c.hIncrBy(k('nr:sess'), 'visits', 2), 3);
  assert.deepEqual({ ...(await c.hGetAll(k('nr:sess'))) }, { user: 'alice', visits: '3' });
  assert.equal(await c.hDel(k('nr:sess'), 'user'), 1);
  await assert.rejects(c.get(k('nr:sess')), /WRONGTYPE/);
  // Tags in sets, a queue on a list.
  assert.equal(await c.sAdd(k('nr:tags'), ['x', 'y']), 2);
  assert.deepEqual((await c.sMembers(k('nr:tags'))).sort(), ['x', 'y']);
  assert.equal(await c.rPush(k('nr:queue'), ['j1', 'j2', 'j3']), 3);
  assert.equal(await c.lPop(k('nr:queue')), 'j1');
  assert.deepEqual(await c.lRange(k('nr:queue'), 0, -1), ['j2', 'j3']);
  assert.deepEqual({ ...(await c.blPop(k('nr:queue'), 1)) }, { key: k('nr:queue'), element: 'j2' });
  assert.equal(await other.blPop(k('nr:none'), 0.1), null);
  // A leaderboard on a sorted set.
  assert.equal(await c.zAdd(k('nr:board'), [{ score: 10, value: 'alice' }, { score: 20, value: 'bob' }]), 2);
  assert.equal(await c.zIncrBy(k('nr:board'), 12.5, 'alice'), 22.5);
  assert.deepEqual(await c.zRange(k('nr:board'), 0, -1, { REV: true }), ['alice', 'bob']);
  assert.equal(await c.zRank(k('nr:board'), 'bob'), 0);
  // A transaction.
  const replies = await c.multi().set(k('nr:n'), '1').incrBy(k('nr:n'), 41).get(k('nr:n')).exec();
  assert.deepEqual(replies, ['OK', 42, '42']);
  // WATCH: a change by another client aborts EXEC.
  await c.watch(k('nr:n'));
  await other.set(k('nr:n'), 'changed');
  await assert.rejects(c.multi().set(k('nr:n'), 'mine').exec(), (e) => e.constructor.name === 'WatchError');
  assert.equal(await c.get(k('nr:n')), 'changed');
  // Iterating the keyspace.
  await Promise.all(Array.from({ length: 200 }, (_, i) => c.set(k(`nr:scan:${i}`), String(i))));
  const found = new Set();
  for await (const keys of c.scanIterator({ MATCH: k('nr:scan:*'), COUNT: 30 })) {
    for (const key of [keys].flat()) found.add(key);
  }
  assert.equal(found.size, 200);
  await c.quit();
  await other.quit();
}

async function ioredis() {
  const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  const other = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  await other.connect();
  assert.equal(await r.set(k('io:cache'), 'bob', 'EX', 60), 'OK');
  assert.equal(await r.get(k('io:cache')), 'bob');
  assert.equal(await r.setex(k('io:session'), 30, 'token'), 'OK');
  assert.equal(await r.expire(k('io:session'), 100), 1);
  assert.ok((await r.pttl(k('io:session'))) > 95_000);
  assert.equal(await r.set(k('io:short'), 'v', 'PX', 150), 'OK');
  await waitGone((key) => r.get(key), k('io:short'));
  assert.equal(await r.hset(k('io:sess'), { user: 'bob', visits: '1' }), 2);
  assert.equal(await r.hincrby(k('io:sess'), 'visits', 4), 5);
  assert.deepEqual(await r.hgetall(k('io:sess')), { user: 'bob', visits: '5' });
  assert.equal(await r.sadd(k('io:tags'), 'x', 'y', 'z'), 3);
  assert.equal(await r.scard(k('io:tags')), 3);
  assert.equal(await r.lpush(k('io:queue'), 'a', 'b'), 2);
  assert.equal(await r.rpop(k('io:queue')), 'a');
  assert.deepEqual(await r.brpop(k('io:queue'), 1), [k('io:queue'), 'b']);
  assert.equal(await other.blpop(k('io:none'), 0.1), null);
  assert.equal(await r.zadd(k('io:board'), 10, 'alice', 20, 'bob'), 2);
  assert.equal(await r.zincrby(k('io:board'), 12.5, 'alice'), '22.5');
  assert.deepEqual(await r.zrevrange(k('io:board'), 0, -1, 'WITHSCORES'), ['alice', '22.5', 'bob', '20']);
  const replies = await r.multi().set(k('io:n'), '1').incrby(k('io:n'), 41).get(k('io:n')).exec();
  assert.deepEqual(replies, [[null, 'OK'], [null, 42], [null, '42']]);
  await r.watch(k('io:n'));
  await other.set(k('io:n'), 'changed');
  assert.equal(await r.multi().set(k('io:n'), 'mine').exec(), null);
  assert.equal(await r.get(k('io:n')), 'changed');
  const pipeline = r.pipeline();
  for (let i = 0; i < 200; i++) pipeline.set(k(`io:scan:${i}`), String(i));
  await pipeline.exec();
  const found = new Set();
  await new Promise((resolve, reject) => {
    const stream = r.scanStream({ match: k('io:scan:*'), count: 30 });
    stream.on('data', (keys) => keys.forEach((key) => found.add(key)));
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  assert.equal(found.size, 200);
  r.disconnect();
  other.disconnect();
}

await nodeRedis();
await ioredis();
console.log('OK');
