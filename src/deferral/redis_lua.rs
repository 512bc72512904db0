//! The Redis queue's Lua scripts: each queue operation is one script, so Redis runs it atomically
//! (and writes it to the AOF as one MULTI/EXEC block). Keys are `{prefix}q:…`; see docs/deferral.md.

use redis::Script;
use std::sync::LazyLock;

/// Shared by every script: `ARGV[1]` is the key prefix; helpers for items and jobs.
const PRELUDE: &str = r"
local P = ARGV[1]
local function K(...) return P .. 'q:' .. table.concat({...}, ':') end
local function item_row(id)
  local f = redis.call('HMGET', K('item', id), 'scope', 'model', 'state', 'job', 'created', 'result',
    'result_ms', 'wh_attempts')
  if not f[1] then return nil end
  local b, s = false, false
  if f[4] then
    local j = redis.call('HMGET', K('job', f[4]), 'batch', 'upstream_state')
    b, s = j[1], j[2]
  end
  return {id, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], b, s}
end
local function set_result(id, text, now)
  local ik = K('item', id)
  local f = redis.call('HMGET', ik, 'result', 'state', 'scope', 'model', 'bytes', 'webhook')
  if f[1] or not f[2] then return 0 end
  if f[2] == 'queued' then
    local g = f[3] .. '|' .. f[4]
    if redis.call('ZREM', K('queued', g), id) == 1 then
      redis.call('HINCRBY', K('gbytes'), g, -tonumber(f[5]))
    end
  end
  redis.call('HSET', ik, 'result', text, 'result_ms', now, 'state', 'done', 'wh_next', now)
  redis.call('SREM', K('assigned'), id)
  redis.call('ZADD', K('done'), now, id)
  if f[6] == '1' then redis.call('ZADD', K('webhooks'), now, id) end
  return 1
end
local function job_state(j) return redis.call('HGET', K('job', j), 'state') end
local function move_job(j, from, to, score)
  redis.call('ZREM', K('jobs', from), j)
  redis.call('ZADD', K('jobs', to), score, j)
  redis.call('HSET', K('job', j), 'state', to)
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// ARGV: P, id, scope, model, body, prefix, bytes, created, webhook. 0 if the id exists.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id = ARGV[2]
local ik = K('item', id)
if redis.call('EXISTS', ik) == 1 then return 0 end
local seq = redis.call('INCR', K('seq'))
local g = ARGV[3] .. '|' .. ARGV[4]
redis.call('HSET', ik, 'scope', ARGV[3], 'model', ARGV[4], 'body', ARGV[5], 'prefix', ARGV[6],
  'bytes', ARGV[7], 'state', 'queued', 'created', ARGV[8], 'webhook', ARGV[9], 'wh_attempts', 0,
  'wh_next', 0, 'seq', seq)
redis.call('ZADD', K('queued', g), ARGV[8], id)
redis.call('HINCRBY', K('gbytes'), g, ARGV[7])
redis.call('SADD', K('groups'), g)
redis.call('ZADD', K('scope', ARGV[3]), seq, id)
return 1
",
    )
});

/// ARGV: P, id. An item row or nil.
pub static ITEM: LazyLock<Script> = LazyLock::new(|| script("return item_row(ARGV[2]) or false"));

/// ARGV: P, scope, limit, after id ('' = from the newest). Item rows, newest first.
pub static ITEMS_OF_SCOPE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local max = '+inf'
if ARGV[4] ~= '' then
  local s = redis.call('HGET', K('item', ARGV[4]), 'seq')
  if not s then return {} end
  max = '(' .. s
end
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', K('scope', ARGV[2]), max, '-inf', 'LIMIT', 0, ARGV[3])) do
  local r = item_row(id)
  if r then out[#out + 1] = r end
end
return out
",
    )
});

/// ARGV: P, id, result json, now. 1 if the item got this result.
pub static RESOLVE: LazyLock<Script> = LazyLock::new(|| script("return set_result(ARGV[2], ARGV[3], ARGV[4])"));

/// ARGV: P. Flat [group, count, bytes, oldest, …]; empty groups are dropped.
pub static GROUPS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
for _, g in ipairs(redis.call('SMEMBERS', K('groups'))) do
  local n = redis.call('ZCARD', K('queued', g))
  if n == 0 then
    redis.call('SREM', K('groups'), g)
    redis.call('HDEL', K('gbytes'), g)
  else
    local first = redis.call('ZRANGE', K('queued', g), 0, 0, 'WITHSCORES')
    out[#out + 1] = g
    out[#out + 1] = n
    out[#out + 1] = redis.call('HGET', K('gbytes'), g) or '0'
    out[#out + 1] = first[2]
  end
end
return out
",
    )
});

/// ARGV: P, job id, scope, model, max items, max bytes, next_ms, job field/value pairs…
/// Same order as SQLite: prefix groups by their oldest request, then age.
pub static FORM_JOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local jid, g = ARGV[2], ARGV[3] .. '|' .. ARGV[4]
local max_items, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local ids = redis.call('ZRANGE', K('queued', g), 0, -1, 'WITHSCORES')
local rows, first = {}, {}
for i = 1, #ids, 2 do
  local id, t = ids[i], tonumber(ids[i + 1])
  local f = redis.call('HMGET', K('item', id), 'prefix', 'bytes')
  rows[#rows + 1] = {id = id, p = f[1], b = tonumber(f[2]), t = t}
  if first[f[1]] == nil or first[f[1]] > t then first[f[1]] = t end
end
table.sort(rows, function(a, b)
  if first[a.p] ~= first[b.p] then return first[a.p] < first[b.p] end
  if a.p ~= b.p then return a.p < b.p end
  if a.t ~= b.t then return a.t < b.t end
  return a.id < b.id
end)
local n, bytes = 0, 0
for _, r in ipairs(rows) do
  if n >= max_items or (n > 0 and bytes + r.b > max_bytes) then break end
  redis.call('HSET', K('item', r.id), 'state', 'assigned', 'job', jid)
  redis.call('ZREM', K('queued', g), r.id)
  redis.call('HINCRBY', K('gbytes'), g, -r.b)
  redis.call('SADD', K('jobitems', jid), r.id)
  redis.call('SADD', K('assigned'), r.id)
  n = n + 1
  bytes = bytes + r.b
end
if n > 0 then
  redis.call('HSET', K('job', jid), unpack(ARGV, 8))
  redis.call('ZADD', K('jobs', 'intent'), ARGV[7], jid)
end
return n
",
    )
});

/// ARGV: P, state, now ('+inf': all), limit (-1: none). Each job as [id, field, value, …], by
/// next_ms.
pub static DUE_JOBS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K('jobs', ARGV[2]), '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])) do
  local h = redis.call('HGETALL', K('job', id))
  table.insert(h, 1, id)
  out[#out + 1] = h
end
return out
",
    )
});

/// ARGV: P, job id. [id, field, value, …] or nil.
pub static JOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local h = redis.call('HGETALL', K('job', ARGV[2]))
if #h == 0 then return false end
table.insert(h, 1, ARGV[2])
return h
",
    )
});

/// ARGV: P, job id. Flat [id, body, …] of the job's items without a result, in enqueue order.
pub static JOB_INPUTS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local rows = {}
for _, id in ipairs(redis.call('SMEMBERS', K('jobitems', ARGV[2]))) do
  local f = redis.call('HMGET', K('item', id), 'result', 'seq', 'body')
  if not f[1] and f[2] then rows[#rows + 1] = {tonumber(f[2]), id, f[3]} end
end
table.sort(rows, function(a, b) return a[1] < b[1] end)
local out = {}
for _, r in ipairs(rows) do
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
",
    )
});

/// ARGV: P, job id. How many of the job's items have no result.
pub static OPEN_ITEMS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', K('jobitems', ARGV[2]))) do
  if not redis.call('HGET', K('item', id), 'result') then n = n + 1 end
end
return n
",
    )
});

/// ARGV: P, job id, next_ms.
pub static NOTE_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local st = job_state(ARGV[2])
if not st then return 0 end
redis.call('HINCRBY', K('job', ARGV[2]), 'attempts', 1)
redis.call('HSET', K('job', ARGV[2]), 'next', ARGV[3])
redis.call('ZADD', K('jobs', st), 'XX', ARGV[3], ARGV[2])
return 1
",
    )
});

/// ARGV: P, job id, batch, next_ms. Only an intent becomes submitted.
pub static MARK_SUBMITTED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if job_state(ARGV[2]) ~= 'intent' then return 0 end
redis.call('HSET', K('job', ARGV[2]), 'batch', ARGV[3], 'next', ARGV[4])
move_job(ARGV[2], 'intent', 'submitted', ARGV[4])
return 1
",
    )
});

/// ARGV: P, job id, next_ms, interval_ms, upstream state ('' = keep).
pub static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local st = job_state(ARGV[2])
if not st then return 0 end
redis.call('HSET', K('job', ARGV[2]), 'next', ARGV[3], 'interval', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', K('job', ARGV[2]), 'upstream_state', ARGV[5]) end
redis.call('ZADD', K('jobs', st), 'XX', ARGV[3], ARGV[2])
return 1
",
    )
});

/// ARGV: P, job id, upstream state, now, rest json, then (item id, result json) pairs. A job
/// already done changes nothing (a replayed poll). Returns how many items got a result.
pub static FINISH_JOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local jid, now = ARGV[2], ARGV[4]
local st = job_state(jid)
if not st or st == 'done' then return 0 end
local n = 0
for i = 6, #ARGV, 2 do
  if redis.call('HGET', K('item', ARGV[i]), 'job') == jid then n = n + set_result(ARGV[i], ARGV[i + 1], now) end
end
for _, id in ipairs(redis.call('SMEMBERS', K('jobitems', jid))) do n = n + set_result(id, ARGV[5], now) end
redis.call('HSET', K('job', jid), 'upstream_state', ARGV[3], 'finished', now)
move_job(jid, st, 'done', now)
return n
",
    )
});

/// ARGV: P, old job id, upstream state, now, new job id, next_ms, new job field/value pairs…
pub static RESUBMIT_JOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local old, new = ARGV[2], ARGV[5]
local st = job_state(old)
if not st or st == 'done' then return 0 end
redis.call('HSET', K('job', new), unpack(ARGV, 7))
redis.call('ZADD', K('jobs', 'intent'), ARGV[6], new)
for _, id in ipairs(redis.call('SMEMBERS', K('jobitems', old))) do
  if not redis.call('HGET', K('item', id), 'result') then
    redis.call('SREM', K('jobitems', old), id)
    redis.call('SADD', K('jobitems', new), id)
    redis.call('HSET', K('item', id), 'job', new)
  end
end
redis.call('HSET', K('job', old), 'upstream_state', ARGV[3], 'finished', ARGV[4])
move_job(old, st, 'done', ARGV[4])
return 1
",
    )
});

/// ARGV: P, now, limit. Item rows whose webhook is due.
pub static WEBHOOKS_DUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K('webhooks'), '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])) do
  local r = item_row(id)
  if r then out[#out + 1] = r end
end
return out
",
    )
});

/// ARGV: P, id, webhook state (1 retry, 2 delivered, 3 given up), next_ms ('' = none).
pub static WEBHOOK_ATTEMPTED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ik = K('item', ARGV[2])
if redis.call('EXISTS', ik) == 0 then return 0 end
redis.call('HINCRBY', ik, 'wh_attempts', 1)
redis.call('HSET', ik, 'webhook', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', ik, 'wh_next', ARGV[4]) end
if ARGV[3] == '1' then
  redis.call('ZADD', K('webhooks'), redis.call('HGET', ik, 'wh_next'), ARGV[2])
else
  redis.call('ZREM', K('webhooks'), ARGV[2])
end
return 1
",
    )
});

/// ARGV: P, before_ms. Looks at up to 1000 finished items, deletes those without a pending
/// webhook, and finished jobs left without items. Returns {deleted, looked at}.
pub static PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = 0
local ids = redis.call('ZRANGEBYSCORE', K('done'), '-inf', '(' .. ARGV[2], 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local ik = K('item', id)
  local f = redis.call('HMGET', ik, 'webhook', 'scope', 'job')
  if f[1] ~= '1' then
    redis.call('DEL', ik)
    redis.call('ZREM', K('done'), id)
    if f[2] then redis.call('ZREM', K('scope', f[2]), id) end
    if f[3] then redis.call('SREM', K('jobitems', f[3]), id) end
    n = n + 1
  end
end
for _, j in ipairs(redis.call('ZRANGEBYSCORE', K('jobs', 'done'), '-inf', '(' .. ARGV[2], 'LIMIT', 0, 1000)) do
  if redis.call('SCARD', K('jobitems', j)) == 0 then
    redis.call('DEL', K('job', j))
    redis.call('ZREM', K('jobs', 'done'), j)
  end
end
return {n, #ids}
",
    )
});

/// ARGV: P. [queued, assigned, intents, submitted, oldest queued ms or -1].
pub static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local q, oldest = 0, -1
for _, g in ipairs(redis.call('SMEMBERS', K('groups'))) do
  local n = redis.call('ZCARD', K('queued', g))
  q = q + n
  if n > 0 then
    local t = tonumber(redis.call('ZRANGE', K('queued', g), 0, 0, 'WITHSCORES')[2])
    if oldest < 0 or t < oldest then oldest = t end
  end
end
return {q, redis.call('SCARD', K('assigned')), redis.call('ZCARD', K('jobs', 'intent')),
  redis.call('ZCARD', K('jobs', 'submitted')), oldest}
",
    )
});

/// KEYS: claim key; ARGV: token, ttl ms. Extends the claim only if still ours.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
",
    )
});

/// KEYS: claim key; ARGV: token. Deletes the claim only if still ours.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});
