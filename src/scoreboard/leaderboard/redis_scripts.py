"""The Lua half of the Redis ranking: every change and every listing runs as one script, so
Redis applies it atomically and readers never see a board's three structures disagree. All
keys of one script belong to one board period and share its hash tag (one cluster slot).

Records in the users hash are JSON arrays ``[version, score, last_updated_us, order_member,
username]``; scripts read only the version (index 1) and the order member (index 4).
"""

from __future__ import annotations

# Order members are f"{sortable score:016d}|{last_updated_us:020d}|{user_id}": sorted by
# bytes they list the best score first (the sortable score is SCORE_CEILING - score on desc
# boards, the score itself on asc ones), then first to reach it, then user id. Scores stay
# below 2**53 because the board's ZSET scores are doubles, exact only up to there.
SCORE_CEILING = 2**53
SCORE_WIDTH = 16
TIME_WIDTH = 20
ORDER_ID_OFFSET = SCORE_WIDTH + 1 + TIME_WIDTH + 1

# Shared by the scripts. ``upsert`` refuses anything not newer than what is stored, so
# updates for one user may arrive in any order and from any instance.
_COMMON = """
local function upsert(board, order, users, user_id, version, score, member, record)
  local stored = redis.call('HGET', users, user_id)
  if stored then
    local old = cjson.decode(stored)
    if old[1] >= version then return false end
    redis.call('ZREM', order, old[4])
  end
  redis.call('ZADD', board, score, user_id)
  redis.call('ZADD', order, 0, member)
  redis.call('HSET', users, user_id, record)
  return true
end

-- 1 + the users with a strictly better score ('desc': higher is better, 'asc': lower).
local function rank_for(board, score, direction)
  if direction == 'asc' then
    return 1 + redis.call('ZCOUNT', board, '-inf', '(' .. score)
  end
  return 1 + redis.call('ZCOUNT', board, '(' .. score, '+inf')
end

-- The revision never goes back, not even after Redis lost its data: it is at least the
-- server clock in microseconds, so it can double as a cluster-wide version.
local function bump(revision)
  local now = redis.call('TIME')
  local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local current = tonumber(redis.call('GET', revision) or '0')
  return redis.call('INCRBY', revision, math.max(1, now_us - current))
end
"""

# KEYS: board, order, users, revision, rebuild lock, rebuild journal
# ARGV: direction, then groups of (user_id, version, score, order_member, record)
# Returns {record, rank} per group: the user's standing after the change (or after the newer
# change already stored).
APPLY = (
    _COMMON
    + """
local rebuilding = redis.call('EXISTS', KEYS[5]) == 1
local changed = 0
local standings = {}
for i = 2, #ARGV, 5 do
  local user_id = ARGV[i]
  if upsert(KEYS[1], KEYS[2], KEYS[3], user_id, tonumber(ARGV[i + 1]), ARGV[i + 2],
            ARGV[i + 3], ARGV[i + 4]) then
    changed = changed + 1
    -- A rebuild is loading a snapshot that may predate this change: keep it for the swap.
    if rebuilding then redis.call('HSET', KEYS[6], user_id, ARGV[i + 4]) end
  end
end
if changed > 0 then bump(KEYS[4]) end
for i = 2, #ARGV, 5 do
  local user_id = ARGV[i]
  standings[#standings + 1] = redis.call('HGET', KEYS[3], user_id)
  local score = redis.call('ZSCORE', KEYS[1], user_id)
  standings[#standings + 1] = rank_for(KEYS[1], score, ARGV[1])
end
return standings
"""
)

# KEYS: board, order, users, revision, new board, new order, new users, rebuild journal,
# complete (the marker that the period holds every committed user: only a swap or a full
# check sets it, never a change, so a period whose keys were lost is told from a new one)
SWAP = (
    _COMMON
    + """
local journal = redis.call('HGETALL', KEYS[8])
for i = 1, #journal, 2 do
  local record = cjson.decode(journal[i + 1])
  upsert(KEYS[5], KEYS[6], KEYS[7], journal[i], record[1], record[2], record[4], journal[i + 1])
end
redis.call('DEL', KEYS[8])
for i = 1, 3 do
  -- UNLINK frees the old structure in the background: RENAME over it would free a million
  -- members inside this script and stall every other client for a second.
  redis.call('UNLINK', KEYS[i])
  if redis.call('EXISTS', KEYS[i + 4]) == 1 then
    redis.call('RENAME', KEYS[i + 4], KEYS[i])
    redis.call('PERSIST', KEYS[i])  -- the loading keys expire in case the loader dies
  end
end
redis.call('SET', KEYS[9], '1')
return bump(KEYS[4])
"""
)

# KEYS: board, order, users
# ARGV: direction, user_id and span (the neighbourhood of a user), or direction, '' , limit
# and offset (a page of the listing).
# Returns {first position, rank of the first listed, user ids, records}, or false.
WINDOW = (
    _COMMON
    + """
local start, stop
if ARGV[2] == '' then
  start = tonumber(ARGV[4])
  stop = start + tonumber(ARGV[3]) - 1
else
  local stored = redis.call('HGET', KEYS[3], ARGV[2])
  if not stored then return false end
  local index = redis.call('ZRANK', KEYS[2], cjson.decode(stored)[4])
  if not index then return redis.error_reply('ranking cache inconsistent: no order entry') end
  local span = tonumber(ARGV[3])
  start, stop = math.max(0, index - span), index + span
end
local members = redis.call('ZRANGE', KEYS[2], start, stop)
if #members == 0 then return {start, 0, {}, {}} end
local ids = {}
local records = {}
for i, member in ipairs(members) do
  ids[i] = string.sub(member, ID_START)
  records[i] = redis.call('HGET', KEYS[3], ids[i])
end
local first_score = redis.call('ZSCORE', KEYS[1], ids[1])
if not first_score then return redis.error_reply('ranking cache inconsistent: no score') end
return {start, rank_for(KEYS[1], first_score, ARGV[1]), ids, records}
"""
).replace("ID_START", str(ORDER_ID_OFFSET + 1))  # Lua strings count from 1

# KEYS: board, users
# ARGV: direction, then user ids
# Returns {user id, record, rank} for each of them on the board.
RANKS = (
    _COMMON
    + """
local found = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    found[#found + 1] = ARGV[i]
    found[#found + 1] = redis.call('HGET', KEYS[2], ARGV[i])
    found[#found + 1] = rank_for(KEYS[1], score, ARGV[1])
  end
end
return found
"""
)

# KEYS: board, order, users, complete
# ARGV: user ids
# Returns {users in the hash, on the board, in the order, complete marker set}, then for each
# user {record or false, board score or false, 1 if the record's order member is listed}:
# one atomic look, so a check never sees a change half applied.
INSPECT = """
local out = {redis.call('HLEN', KEYS[3]), redis.call('ZCARD', KEYS[1]),
             redis.call('ZCARD', KEYS[2]), redis.call('EXISTS', KEYS[4])}
for i = 1, #ARGV do
  local stored = redis.call('HGET', KEYS[3], ARGV[i])
  local listed = 0
  if stored then
    local ok, record = pcall(cjson.decode, stored)
    if ok and type(record) == 'table' and type(record[4]) == 'string'
       and redis.call('ZSCORE', KEYS[2], record[4]) then
      listed = 1
    end
  end
  out[#out + 1] = stored or false
  out[#out + 1] = redis.call('ZSCORE', KEYS[1], ARGV[i]) or false
  out[#out + 1] = listed
end
return out
"""

# KEYS: board, order, users, revision, rebuild lock, rebuild journal
# ARGV: groups of (user_id, mode, version, score, order_member, record), by mode:
# - put: the committed record goes back, unless a newer version is already stored;
# - drop: the database does not have the user: removed if still at ``version``;
# - replace: the cache is ahead of the database (it went back in time, e.g. a restore): the
#   record replaces the stored one if that is still at ``version``.
# While a rebuild runs, what is put back is journaled too, like a change, so the swap keeps it.
# Returns how many users it changed.
REPAIR = (
    _COMMON
    + """
local rebuilding = redis.call('EXISTS', KEYS[5]) == 1
local changed = 0
for i = 1, #ARGV, 6 do
  local user_id, mode, version = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local record = ARGV[i + 5]
  local stored = redis.call('HGET', KEYS[3], user_id)
  local old = nil
  if stored then
    local ok, decoded = pcall(cjson.decode, stored)
    if ok and type(decoded) == 'table' then old = decoded end
  end
  local stored_version = old and tonumber(old[1]) or -1
  local go
  if mode == 'put' then go = stored_version <= version else go = stored_version == version end
  if go then
    if old and type(old[4]) == 'string' then redis.call('ZREM', KEYS[2], old[4]) end
    if mode == 'drop' then
      redis.call('HDEL', KEYS[3], user_id)
      redis.call('ZREM', KEYS[1], user_id)
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 3], user_id)
      redis.call('ZADD', KEYS[2], 0, ARGV[i + 4])
      redis.call('HSET', KEYS[3], user_id, record)
      if rebuilding then redis.call('HSET', KEYS[6], user_id, record) end
    end
    changed = changed + 1
  end
end
if changed > 0 then bump(KEYS[4]) end
return changed
"""
)
