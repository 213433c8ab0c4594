-- Long file: a port of the whole ledger (crates/core/src/ledger), kept in one script so that every command runs atomically with the same functions.
-- The ledger of callgate_core::Ledger, on Redis: one call of this function is one command,
-- run atomically. It is a port of crates/core/src/ledger (read that for the why of each
-- rule); every function keeps the name of its Rust original, so the two can be read side
-- by side. The conformance suite runs both on random histories and compares every answer,
-- event and state.
--
-- Loaded as a Redis function library (the Rust side prepends `#!lua name=…` and names the
-- function): its helpers are built once at load, not on every call as a script's would be.
-- KEYS[1] is `{cg:<domain>}:m`; every other key shares its hash tag (Redis Cluster keeps
-- them in one slot). ARGV[1] names the command, ARGV[2] is "now" in Unix ms ("": Redis
-- server time), optionally followed by `|<tag>`: the calling node's tag for the command's
-- stream entry (field o; see P:events) and its kept answer (P:o:<origin>), or by `|~<tag>`:
-- the tag of its kept answer only (a node without a journal: no settle marks follow, so
-- its entries carry no tag for the others to hold back). Numbers are Lua
-- doubles: ids, times and counts stay below 2^53 (the Rust side refuses TTLs and waits
-- that could pass it).
--
-- Keys (P = `{cg:<domain>}`):
--   P:m   hash   pw (waiting tickets without a flow), fw<f> (waiting tickets of flow f)
--   P:s   string LAYOUT_HEAD, then the spec, JSON (see spec.rs), with derived tables (ranks,
--                reserves above); a spec without the head is the layout before (a hash
--                P:K of keys, leases packed as maps), which `open` migrates
--   P:id  string the last id handed out (INCR; leases and tickets share it)
--   P:seq string the last arrival sequence number (INCR)
--   P:p<i> hash  pool i: limit, cap, capo (cap override, absent: none), used, w (tickets
--                in its line), hold (the
--                mean hold time, %.17g), u<k> (units used by class k), n<k>:<need> (how
--                many tickets of class k wait with that need)
--   P:q<i> zset  pool i's line: member ticket id, score rank * 2^40 + seq
--   P:L   zset   leases, scored by id (found by id, paged in id order); each member is the
--                lease packed in the shape of its answers and events (lease_out), so a
--                release answers the stored bytes
--   P:T   hash   ticket id -> msgpack ticket
--   P:k:<key> string  an idempotency key's holder: its lease, packed (the same bytes as its
--                member of P:L, so a release by key reads it here), or "T<id>" (a waiting
--                ticket). A string each, not fields of one hash: a lookup is one hash-table
--                probe, where a hash of up to 128 fields is a list Redis scans. (A keyed
--                lease's bytes are stored twice, here and in P:L: put_lease writes both.)
--   P:r:<id> string  another node's acquire retried by key found lease id (in the last
--                FOUND_MS; command `found`) and journals it to answer "granted", so the
--                take-back of a grant whose own journal commit was lost leaves it
--   P:x   zset   lease expiries (member zero-padded id, so equal times go by id)
--   P:d   zset   ticket deadlines (the same)
--   P:E   hash   ended ticket id -> msgpack {o = outcome, l = lease, a = at, f = flow}
--   P:EO  list   "at:id" of ended tickets, oldest end first (forgotten from the front)
--   P:duty:<name> string  a duty lease, `<node>|<token>` (duty.rs); fenced commands read it
--   P:A   zset   ids of leases adopted from a node's local fallback, scored by when
--   P:nodes zset  nodes with local_fallback pools, scored by when each turns silent (its
--                last presence + its lapse, Redis ms)
--   P:ns  hash   node -> "<hold-back ends at>|<share of pool 0>,<share of pool 1>,..." (the
--                shares it declared at its last presence)
--   P:o:<origin> string  the last answer to a call a node tagged (`<origin>.<k>`): the
--                tag, a newline, the answer as MessagePack (answered; read back by a node
--                whose reply never came: command kept); expires after ANSWER_KEPT_MS
--   P:oc:<origin> string  the tag of a call its node gave up (kept found no answer): refused
--                should it still come; expires after ANSWER_KEPT_MS
--   P:events stream  each command's events, in commit order: field e (the events as
--                MessagePack arrays, in the shape of the answers), field n (its now), field o
--                (the calling node's tag, `<origin>.<k>`, when it gave one); and the nodes'
--                settle marks (field s, `<origin>.<k>`: that node's entries up to its k-th
--                are durable; XADDed by the node, not here); trimmed to about STREAM_LEN entries

-- Per call: set by `call` below before anything else runs. Redis runs one function at a
-- time, so these library-level locals are the state of the one call in progress.
local KEYS, ARGV, META, P, CMD, now, spec, EV
-- The calling node's tag for this call's stream entry ('': none), and the tag's origin
-- (nil without a tag).
local TAG, ORIGIN, STREAM_TAG
-- The library functions the script calls most, as locals (an upvalue each, where a global's
-- field is two table lookups per call); set by `call` (what a function library may read
-- while it loads is not all of what it may call).
local rcall, mp_pack, mp_unpack, mp_unpack_limit, sformat, ssub, sbyte
-- The names of the keys the request paths touch, made once per domain (`names` in `call`;
-- P .. ':L' each time built and hashed a new string).
local PL, PT, PX, PD, PE, PEO, PKEY, PEV
local SEQ_SPAN = 1099511627776 -- 2^40: a line's order is rank * 2^40 + seq
-- Enough history for a node that reads the stream every few milliseconds to miss nothing
-- after a pause of a few seconds under load, at a few MB of Redis memory.
-- (A string: Redis formats a number argument with "%.17g", and Lua a number joined to a
-- string with "%.14g", each a floating-point printf of a few thousand instructions, where
-- string.format('%d') is an integer's.)
local STREAM_LEN = '10000'
-- How long a tagged call's answer is kept for a caller whose reply was lost (P:o:<origin>):
-- far longer than the caller takes to ask (at once, on a new connection).
local ANSWER_KEPT_MS = '60000'
-- How long P:r:<id> marks a lease a retry found: far longer than a take-back may come after
-- its grant (two commit timeouts, then ten tries a second apart).
local FOUND_MS = '60000'

-- The head of the stored spec (P:s) that names this layout of the keys. A library of the
-- layout before reads the spec as JSON, and fails on the head (it cannot misread the keys);
-- this one refuses a domain without it, except `open`, which migrates it in place.
local LAYOUT_HEAD = 'layout2:'

-- Decoded specs by domain, kept while the stored JSON is the same string (Lua interns
-- strings, so the comparison is one pointer): decoding it on every call cost a quarter of
-- an uncontended acquire.
local specs = {}
local spec_count = 0

-- Small whole numbers by their decimal strings, made by the first call: a batch's counts
-- and a flow's index are read with one table lookup instead of tonumber's strtod.
local SMALL = {}
local SMALL_S = {} -- and the strings by the numbers

local function num(a)
  return SMALL[a] or tonumber(a)
end

local function s(n)
  return sformat('%d', n)
end

local function pad(n)
  return sformat('%016d', n)
end

-- Runs of 0 to 16 zeros, made by the first call: pad_s(s(n)) is pad(n) with one join in
-- place of a second string.format.
local ZEROS = {}

local function pad_s(sid)
  return ZEROS[16 - #sid] .. sid
end

local function opt_str(a)
  if a == nil or a == '' then
    return nil
  end
  return ssub(a, 2)
end

local function opt_num(a)
  if a == nil or a == '' then
    return nil
  end
  return tonumber(a)
end

local function fail(code, message)
  return { 'err', code, message or code }
end

-- ----- pools -----------------------------------------------------------------------------

local pools
-- A pool's whole-number figures, as named in its hash.
local POOL_FIGURES = { 'limit', 'cap', 'used', 'w' }

-- Per domain (set by `call`): pool i's hash name, made once (see STREAM_LEN), and the
-- counters' key names.
local POOL_KEYS, COUNTER_KEYS
-- 'u<k>', a pool's field of the units class k holds, by k.
local CLASS_FIELDS = {}

local function pool_key(i)
  local key = POOL_KEYS[i]
  if not key then
    key = P .. ':p' .. s(i)
    POOL_KEYS[i] = key
  end
  return key
end

local function class_field(k)
  local f = CLASS_FIELDS[k]
  if not f then
    f = 'u' .. s(k)
    CLASS_FIELDS[k] = f
  end
  return f
end

local function counter_key(name)
  local key = COUNTER_KEYS[name]
  if not key then
    key = P .. ':' .. name
    COUNTER_KEYS[name] = key
  end
  return key
end

local function pool(i)
  local p = pools[i]
  if p then
    return p
  end
  local h = rcall('HGETALL', pool_key(i))
  -- `was`: the figures as stored, so that save_pools writes only those that changed.
  local was = { u = {} }
  p = { i = i, w = 0, ubc = {}, needs = {}, touched = {}, ra = spec.pools[i + 1].ra, was = was }
  for j = 1, #h, 2 do
    local f, v = h[j], h[j + 1]
    local c = ssub(f, 1, 1)
    if f == 'limit' or f == 'cap' or f == 'used' or f == 'hold' or f == 'w' then
      p[f] = tonumber(v)
      was[f] = p[f]
    elseif f == 'capo' then
      p.capo = tonumber(v)
      p.had_capo = true
      was.capo = p.capo
    elseif c == 'u' then
      local k = tonumber(ssub(f, 2))
      p.ubc[k] = tonumber(v)
      was.u[k] = p.ubc[k]
    elseif c == 'n' then
      local k, need = string.match(f, '^n(%d+):(%d+)$')
      k = tonumber(k)
      p.needs[k] = p.needs[k] or {}
      p.needs[k][tonumber(need)] = tonumber(v)
    end
  end
  pools[i] = p
  return p
end

local NOTHING = { u = {} } -- (never written)

-- Writes each pool's figures that changed since they were read (all of a pool made anew).
local function save_pools()
  for i, p in pairs(pools) do
    local key = pool_key(i)
    local was = p.was or NOTHING
    local args = {}
    for _, f in ipairs(POOL_FIGURES) do
      if p[f] ~= was[f] then
        args[#args + 1] = f
        args[#args + 1] = s(p[f])
      end
    end
    if p.hold ~= was.hold then
      args[#args + 1] = 'hold'
      args[#args + 1] = sformat('%.17g', p.hold)
    end
    for k, u in pairs(p.ubc) do
      if u ~= was.u[k] then
        args[#args + 1] = class_field(k)
        args[#args + 1] = s(u)
      end
    end
    if p.capo then
      if p.capo ~= was.capo then
        args[#args + 1] = 'capo'
        args[#args + 1] = s(p.capo)
      end
    elseif p.had_capo then
      rcall('HDEL', key, 'capo')
    end
    for f, _ in pairs(p.touched) do
      local k, need = string.match(f, '^n(%d+):(%d+)$')
      local c = (p.needs[tonumber(k)] or {})[tonumber(need)] or 0
      if c > 0 then
        args[#args + 1] = f
        args[#args + 1] = s(c)
      else
        rcall('HDEL', key, f)
      end
    end
    if #args > 0 then
      rcall('HSET', key, unpack(args))
    end
  end
end

local function need(p, class, units)
  return units + p.ra[class + 1]
end

-- Units held back for silent nodes (local fallback, see `presence` below), by pool: the
-- shares the nodes whose presence lapsed declared, until their hold-back ends. Read once
-- per call, at the first admission check: one ZRANGEBYSCORE, empty while every node is
-- present. Per call: reset by `call` (and by a change of presence).
local held

local function held_back(i)
  if not held then
    held = {}
    for _, node in ipairs(rcall('ZRANGEBYSCORE', P .. ':nodes', '-inf', s(now))) do
      local ends, shares = string.match(rcall('HGET', P .. ':ns', node) or '', '^(%d+)|(.*)$')
      if ends and tonumber(ends) > now then
        local j = 0
        for u in string.gmatch(shares, '%d+') do
          held[j] = (held[j] or 0) + tonumber(u)
          j = j + 1
        end
      end
    end
  end
  return held[i] or 0
end

local function free(p)
  return p.cap - p.used - held_back(p.i)
end

local function can_ever_fit_pool(p, class, units)
  return need(p, class, units) <= p.limit
end

local function needs_add(p, class, n, by)
  local set = p.needs[class] or {}
  p.needs[class] = set
  set[n] = (set[n] or 0) + by
  if set[n] <= 0 then
    set[n] = nil
  end
  p.touched['n' .. class .. ':' .. n] = true
end

local function needs_max(p, class)
  local m = 0
  for n, c in pairs(p.needs[class] or {}) do
    if c > 0 and n > m then
      m = n
    end
  end
  return m
end

local function needs_len(p, class)
  local total = 0
  for _, c in pairs(p.needs[class] or {}) do
    total = total + c
  end
  return total
end

local function queue_len(i)
  return pool(i).w
end

local function observe_hold(p, held)
  p.hold = p.hold + (held - p.hold) / 20.0
  if p.hold < 2.2250738585072014e-308 then
    p.hold = 0
  end
end

local function eta_ms(p, ahead)
  return math.floor((ahead + 1) * p.hold / math.max(p.cap, 1))
end

-- ----- counters ---------------------------------------------------------------------------

-- The id and arrival counters (P:id, P:seq) are handed out from blocks: the first number a
-- call needs takes a block of as many as the call has acquires left (one INCRBY; an
-- acquire takes at most one of each), the next ones come from it (a grant to a waiting
-- ticket takes another block when the block is used up), and what is left of a block at
-- the end of the call is given back (one SET to the last number used). An error midway
-- (Redis functions do not roll back) leaves the counter at the block's end: numbers may
-- be skipped then, never handed out twice. Per call: reset by `call`.
local counters, left
-- Whether a command failed midway in this call and the pools were counted again (`run_guarded`).
local recounted

local function next_of(name)
  local c = counters[name]
  if c == nil or c.next > c.hi then
    local n = math.max(left, 1)
    local hi = rcall('INCRBY', counter_key(name), SMALL_S[n] or s(n))
    c = { next = hi - n + 1, hi = hi }
    counters[name] = c
  end
  local v = c.next
  c.next = v + 1
  return v
end

local function give_back()
  for name, c in pairs(counters) do
    if c.next <= c.hi then
      rcall('SET', counter_key(name), s(c.next - 1))
    end
  end
end

-- ----- leases and tickets ---------------------------------------------------------------

-- (`x or false` is b(x) without the call.)
local function lease_out(l)
  return { l.id, l.k or false, l.c, l.f or false, l.p, l.g, l.x, l.t, l.m or false, l.o or false }
end

-- A lease from its stored bytes, lease_out's array of 10 (a one-byte header, then the
-- items, decoded as values without the array's table). `raw` keeps the bytes, which a
-- release or an expiry answers as they are (whoever changes the lease stores it again with
-- put_lease, which packs it anew); `sid`, its id formatted, if the caller has it.
local function unpack_lease(raw, sid)
  local _, id, k, c, f, p, g, x, t, m, o = mp_unpack_limit(raw, 10, 1)
  return { id = id, k = k or nil, c = c, f = f or nil, p = p, g = g, x = x, t = t, m = m or nil, o = o or nil,
    raw = raw, sid = sid }
end

-- The packed lease: the bytes it was read as, or packed now.
local function packed(l)
  return l.raw or mp_pack(lease_out(l))
end

-- Leases sit in one sorted set, scored by id (each member is the packed lease, which
-- holds its id, so members are unique): found by id, listed in id order, one call each.
-- (An id is passed formatted once: Redis formats a number argument with "%.17g" each time.)
local function get_lease(id)
  local sid = s(id)
  local raw = rcall('ZRANGEBYSCORE', PL, sid, sid)[1]
  return raw and unpack_lease(raw, sid)
end

-- An idempotency key's string: its name.
local function key_name(key)
  return PKEY .. key
end

-- Stores a lease that changed: its member of P:L, and its key's string (the same bytes).
local function put_lease(l)
  local sid = s(l.id)
  rcall('ZREMRANGEBYSCORE', PL, sid, sid)
  l.raw = mp_pack(lease_out(l))
  rcall('ZADD', PL, sid, l.raw)
  if l.k then
    rcall('SET', key_name(l.k), l.raw)
  end
end

local function store_spec(json)
  rcall('SET', P .. ':s', LAYOUT_HEAD .. json)
end

-- The layout before's hash of idempotency keys (key -> "L<id>" or "T<id>").
local function old_keys()
  return P .. ':K'
end

-- Takes a domain of the layout before (idempotency keys as fields of one hash P:K, leases
-- packed as maps) to this one in place, within the one atomic call of `open`, and stores
-- its spec (`raw`, JSON) with this layout's head. Changes nothing else: the node's `open`
-- goes on from here as on a domain of this layout.
local function migrate(raw)
  local bodies = {}
  for _, member in ipairs(rcall('ZRANGE', PL, 0, -1)) do
    local l = mp_unpack(member)
    if l[1] == nil then
      rcall('ZREM', PL, member)
      member = mp_pack(lease_out(l))
      rcall('ZADD', PL, s(l.id), member)
      bodies[l.id] = member
    else
      bodies[l[1]] = member
    end
  end
  local h = rcall('HGETALL', old_keys())
  for j = 1, #h, 2 do
    local v = h[j + 1]
    if ssub(v, 1, 1) == 'L' then
      v = bodies[tonumber(ssub(v, 2))]
    end
    if v then
      rcall('SET', key_name(h[j]), v)
    end
  end
  rcall('DEL', old_keys())
  store_spec(raw)
end

-- Deletes the idempotency keys of every stored lease and ticket (in either layout), and the
-- layout before's hash of them: a reassert starts from nothing.
local function forget_keys()
  for _, member in ipairs(rcall('ZRANGE', PL, 0, -1)) do
    local l = mp_unpack(member)
    local k = l[2]
    if l[1] == nil then
      k = l.k
    end
    if k then
      rcall('DEL', key_name(k))
    end
  end
  for _, raw in ipairs(rcall('HVALS', PT)) do
    local t = mp_unpack(raw)
    if t.k then
      rcall('DEL', key_name(t.k))
    end
  end
  rcall('DEL', old_keys())
end

local tickets

local function get_ticket(id)
  local t = tickets[id]
  if t == nil then
    local raw = rcall('HGET', PT, s(id))
    t = raw and mp_unpack(raw) or false
    tickets[id] = t
  end
  return t or nil
end

local function order_of(t)
  return spec.classes[t.c + 1].rank * SEQ_SPAN + t.s
end

-- An idempotency key's holder, from its string `r`: 'L', id and the lease, or 'T' and id.
local function holder(r)
  if not r then
    return nil, nil, nil
  end
  if sbyte(r) == 84 then -- 'T'
    return 'T', tonumber(ssub(r, 2)), nil
  end
  local l = unpack_lease(r)
  return 'L', l.id, l
end

local function key_ref(key)
  return holder(rcall('GET', PKEY .. key))
end

-- ----- answers ----------------------------------------------------------------------------

local function b(x)
  if x == nil then
    return false
  end
  return x
end

local function ticket_out(t)
  return { t.id, t.k or false, t.c, t.f or false, t.p, t.s, t.e, t.d, t.t, t.m or false, t.o or false }
end

-- Pre-encoded MessagePack heads (a lease is packed once and its bytes used in both the
-- event and the answer): an array of 3 or 4 (0x93, 0x94, 0x92 for 2) and its first item,
-- a one-letter tag (0xa1: a string of 1).
local HEAD_G = '\147\161G' -- { 'G', lease, from }
local HEAD_R = '\147\161R' -- { 'R', lease, at }
local HEAD_X = '\147\161X' -- { 'X', lease, at }
local OUT_G = '\148\161G' -- { 'G', id, existing, lease }
local OUT_R = '\146\161R' -- { 'R', lease }
local FALSE = '\194' -- false
-- The length of a MessagePack unsigned integer by its first byte (0xcc-0xcf: 8 to 64 bits;
-- below 0x80, one byte).
local UINT_LEN = { [0xcc] = 2, [0xcd] = 3, [0xce] = 5, [0xcf] = 9 }

local function outcome_out(o, lease)
  if o == 'g' then
    return { 'g', lease }
  end
  return { o, false }
end

local function view(i)
  local p = pool(i)
  local ubc = {}
  for k = 0, #spec.classes - 1 do
    ubc[#ubc + 1] = p.ubc[k] or 0
  end
  local sp = spec.pools[i + 1]
  return { i, sp.name, p.limit, p.cap, p.used, ubc, sp.res, queue_len(i), math.floor(p.hold) }
end

-- ----- the ledger ---------------------------------------------------------------------------

local dispatch

local function remember(id, o, lease, at, flow)
  rcall('HSET', PE, s(id), mp_pack({ o = o, l = lease, a = at, f = flow }))
  rcall('RPUSH', PEO, s(at) .. ':' .. s(id))
end

local function end_ticket(t, o, at)
  remember(t.id, o, nil, at, t.f)
  EV[#EV + 1] = mp_pack({ 'E', ticket_out(t), o, at })
end

local function flow_waiting(f)
  return tonumber(rcall('HGET', META, 'fw' .. f) or '0')
end

local function enqueue(t)
  local order = order_of(t)
  for j = 1, #t.p, 2 do
    local p = pool(t.p[j])
    rcall('ZADD', P .. ':q' .. p.i, order, s(t.id))
    p.w = p.w + 1
    needs_add(p, t.c, need(p, t.c, t.p[j + 1]), 1)
  end
  if t.f then
    rcall('HINCRBY', META, 'fw' .. t.f, 1)
  else
    rcall('HINCRBY', META, 'pw', 1)
  end
  if t.k then
    rcall('SET', key_name(t.k), 'T' .. s(t.id))
  end
  rcall('ZADD', PD, t.d, pad(t.id))
  rcall('HSET', PT, s(t.id), mp_pack(t))
  tickets[t.id] = t
end

local function dequeue(id)
  local t = get_ticket(id)
  if not t then
    return nil
  end
  rcall('HDEL', PT, s(id))
  tickets[id] = false
  for j = 1, #t.p, 2 do
    local p = pool(t.p[j])
    rcall('ZREM', P .. ':q' .. p.i, s(id))
    p.w = p.w - 1
    needs_add(p, t.c, need(p, t.c, t.p[j + 1]), -1)
  end
  if t.f then
    rcall('HINCRBY', META, 'fw' .. t.f, -1)
  else
    rcall('HINCRBY', META, 'pw', -1)
  end
  if t.k then
    rcall('DEL', key_name(t.k))
  end
  rcall('ZREM', PD, pad(id))
  return t
end

local function grant(ps, class, flow, key, ttl, meta, owner, at, from)
  local id = next_of('id')
  for j = 1, #ps, 2 do
    local p = pool(ps[j])
    p.used = p.used + ps[j + 1]
    p.ubc[class] = (p.ubc[class] or 0) + ps[j + 1]
  end
  local l = { id = id, k = key, c = class, f = flow, p = ps, g = at, x = at + ttl, t = ttl, m = meta, o = owner }
  local sid = s(id)
  rcall('ZADD', PX, s(l.x), pad_s(sid))
  local lo = mp_pack(lease_out(l))
  rcall('ZADD', PL, sid, lo)
  if key then
    rcall('SET', key_name(key), lo)
  end
  EV[#EV + 1] = HEAD_G .. lo .. (from and mp_pack(from) or FALSE)
  return id, l, lo
end

-- Answers how many leases it took out of P:L: 0 for a lease read from its key's string
-- that P:L no longer holds (left by a command that failed midway, see run_guarded).
local function drop_lease(l)
  local sid = l.sid or s(l.id)
  local n = rcall('ZREMRANGEBYSCORE', PL, sid, sid)
  rcall('ZREM', PX, pad_s(sid))
  return n
end

local function take_lease(id)
  local l = get_lease(id)
  if l then
    drop_lease(l)
  end
  return l
end

-- `at` packed; the call's now packed once (every release of a batch ends at it).
local now_packed

local function pack_at(at)
  if at ~= now then
    return mp_pack(at)
  end
  if not now_packed then
    now_packed = mp_pack(now)
  end
  return now_packed
end

local function end_lease(l, at, expired)
  local held = math.max(at - l.g, 0)
  local contended = false
  for j = 1, #l.p, 2 do
    local p = pool(l.p[j])
    p.used = p.used - l.p[j + 1]
    p.ubc[l.c] = p.ubc[l.c] - l.p[j + 1]
    observe_hold(p, held)
    contended = contended or queue_len(p.i) > 0
  end
  if l.k and not l.key_taken then
    rcall('DEL', key_name(l.k))
  end
  local lo = packed(l)
  EV[#EV + 1] = (expired and HEAD_X or HEAD_R) .. lo .. pack_at(at)
  if contended then
    local changed = {}
    for j = 1, #l.p, 2 do
      changed[#changed + 1] = l.p[j]
    end
    dispatch(changed, at)
  end
  return lo
end

local function pools_of(ps)
  local out = {}
  for j = 1, #ps, 2 do
    out[#out + 1] = ps[j]
  end
  return out
end

-- Position (1-based) and estimate of a waiting ticket: its place in the longest line.
local function better(a1, a2, b1, b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end

local function position_of(t)
  local order = order_of(t)
  local best1, best2 = nil, nil
  for j = 1, #t.p, 2 do
    local p = pool(t.p[j])
    local ahead = rcall('ZCOUNT', P .. ':q' .. p.i, '-inf', '(' .. s(order))
    local pos, eta = ahead + 1, eta_ms(p, ahead)
    if best1 == nil or better(pos, eta, best1, best2) then
      best1, best2 = pos, eta
    end
  end
  return best1 or 1, best2 or 0
end

local function arrival_position(t)
  local ahead_classes = spec.classes[t.c + 1].ahead
  local best1, best2 = nil, nil
  for j = 1, #t.p, 2 do
    local p = pool(t.p[j])
    local ahead = 0
    for _, c in ipairs(ahead_classes) do
      ahead = ahead + needs_len(p, c)
    end
    local pos, eta = ahead + 1, eta_ms(p, ahead)
    if best1 == nil or better(pos, eta, best1, best2) then
      best1, best2 = pos, eta
    end
  end
  return best1 or 1, best2 or 0
end

local function retry_after(ps)
  local m = nil
  for j = 1, #ps, 2 do
    local p = pool(ps[j])
    local r = math.floor(p.hold / math.max(p.used, 1))
    if m == nil or r > m then
      m = r
    end
  end
  m = m or 1000
  return math.min(math.max(m, 1000), 300000)
end

local function admits_arrival(ps, class)
  local ahead = spec.classes[class + 1].ahead
  for j = 1, #ps, 2 do
    local p = pool(ps[j])
    local n = need(p, class, ps[j + 1])
    if queue_len(p.i) > 0 then
      for _, c in ipairs(ahead) do
        n = math.max(n, needs_max(p, c))
      end
    end
    if n > free(p) then
      return false
    end
  end
  return true
end

local function units_in(t, i)
  for j = 1, #t.p, 2 do
    if t.p[j] == i then
      return t.p[j + 1]
    end
  end
  return 0
end

local function claim_before(i, order)
  local p = pool(i)
  local ids = rcall('ZRANGEBYSCORE', P .. ':q' .. i, '-inf', '(' .. s(order))
  local m = 0
  for _, id in ipairs(ids) do
    local t = get_ticket(tonumber(id))
    m = math.max(m, need(p, t.c, units_in(t, i)))
  end
  return m
end

dispatch = function(changed, at_now)
  local walks = {}
  for _, i in ipairs(changed) do
    local seen = false
    for _, w in ipairs(walks) do
      if w.pool == i then
        seen = true
      end
    end
    if not seen and queue_len(i) > 0 then
      walks[#walks + 1] = { pool = i, after = nil, bm = 0, done = false }
    end
  end
  while true do
    local next_order, next_id = nil, nil
    for _, w in ipairs(walks) do
      if not w.done then
        local r
        if w.after then
          r = rcall('ZRANGEBYSCORE', P .. ':q' .. w.pool, '(' .. s(w.after), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
        else
          r = rcall('ZRANGE', P .. ':q' .. w.pool, 0, 0, 'WITHSCORES')
        end
        if #r == 0 then
          w.done = true
        else
          local o = tonumber(r[2])
          if next_order == nil or o < next_order then
            next_order, next_id = o, tonumber(r[1])
          end
        end
      end
    end
    if next_order == nil then
      break
    end
    for _, w in ipairs(walks) do
      w.after = next_order
    end
    local t = get_ticket(next_id)
    local admit = true
    for j = 1, #t.p, 2 do
      local p = pool(t.p[j])
      local claim = nil
      for _, w in ipairs(walks) do
        if w.pool == p.i then
          claim = w.bm
        end
      end
      if claim == nil then
        claim = claim_before(p.i, next_order)
      end
      if math.max(claim, need(p, t.c, t.p[j + 1])) > free(p) then
        admit = false
        break
      end
    end
    if admit then
      dequeue(next_id)
      local at = math.max(at_now, t.e)
      local waited = at - t.e
      local lease = grant(t.p, t.c, t.f, t.k, t.t, t.m, t.o, at, { next_id, waited })
      remember(next_id, 'g', lease, at, t.f)
    else
      for j = 1, #t.p, 2 do
        for _, w in ipairs(walks) do
          if w.pool == t.p[j] then
            w.bm = math.max(w.bm, need(pool(w.pool), t.c, t.p[j + 1]))
          end
        end
      end
    end
    for _, w in ipairs(walks) do
      if not w.done and w.bm > free(pool(w.pool)) then
        w.done = true
      end
    end
  end
end

-- Renews lease `id`, if `owner` (nil: anyone) holds it; nil when it is not live, and
-- nil, true when another owner holds it.
local function renew(id, ttl, at, owner)
  local l = get_lease(id)
  if not l then
    return nil
  end
  if owner and l.o ~= owner then
    return nil, true
  end
  if ttl then
    l.t = ttl
  end
  l.x = at + l.t
  rcall('ZADD', PX, l.x, pad(id))
  put_lease(l)
  EV[#EV + 1] = mp_pack({ 'N', id, l.x, l.t, at })
  return l
end

local function cancel(id, at)
  local t = dequeue(id)
  if not t then
    return false
  end
  end_ticket(t, 'c', at)
  dispatch(pools_of(t.p), at)
  return true
end

local function first_due(key, limit)
  local r = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #r == 0 then
    return nil, nil
  end
  local at = tonumber(r[2])
  if at > limit then
    return nil, nil
  end
  return at, tonumber(r[1])
end

local function tick(at_now)
  while true do
    local lat, lid = first_due(PX, at_now)
    local tat, tid = first_due(PD, at_now)
    -- (An expiry or deadline whose lease or ticket is gone, left by a command that failed
    -- midway, is dropped.)
    if lat and (tat == nil or lat <= tat) then
      local l = take_lease(lid)
      if l then
        end_lease(l, lat, true)
      else
        rcall('ZREM', PX, pad(lid))
      end
    elseif tat then
      local t = dequeue(tid)
      if t then
        end_ticket(t, 't', tat)
        dispatch(pools_of(t.p), tat)
      else
        rcall('ZREM', PD, pad(tid))
      end
    else
      break
    end
  end
  while true do
    local front = rcall('LINDEX', PEO, 0)
    if not front then
      break
    end
    local at, id = string.match(front, '^(%d+):(%d+)$')
    if tonumber(at) + spec.retention > at_now then
      break
    end
    rcall('LPOP', PEO)
    rcall('HDEL', PE, id)
  end
end

local function update_cap(p, at)
  local cap = p.limit
  if p.capo then
    cap = math.min(p.capo, p.limit)
  end
  local raised = cap > p.cap
  p.cap = cap
  EV[#EV + 1] = mp_pack({ 'C', p.i, p.limit, cap, at })
  return raised
end

local function add_pools(changed, ps)
  for j = 1, #ps, 2 do
    local seen = false
    for _, i in ipairs(changed) do
      if i == ps[j] then
        seen = true
      end
    end
    if not seen then
      changed[#changed + 1] = ps[j]
    end
  end
end

local function end_never_fitting(doomed, changed, at)
  for _, id in ipairs(doomed) do
    local t = dequeue(id)
    if t then
      add_pools(changed, t.p)
      end_ticket(t, 'n', at)
    end
  end
end

local function set_limit(i, limit, at)
  local p = pool(i)
  local lowered = limit < p.limit
  p.limit = limit
  local raised = update_cap(p, at)
  local changed = { i }
  local ended = false
  if lowered then
    local doomed = {}
    for _, id in ipairs(rcall('ZRANGE', P .. ':q' .. i, 0, -1)) do
      local t = get_ticket(tonumber(id))
      for j = 1, #t.p, 2 do
        if t.p[j] == i and not can_ever_fit_pool(p, t.c, t.p[j + 1]) then
          doomed[#doomed + 1] = t.id
          break
        end
      end
    end
    ended = #doomed > 0
    end_never_fitting(doomed, changed, at)
  end
  if raised or ended then
    dispatch(changed, at)
  end
end

local function set_cap(i, cap, at)
  local p = pool(i)
  p.capo = cap
  if update_cap(p, at) then
    dispatch({ i }, at)
  end
end

-- Cap sources of several nodes (cluster mode): each node's cap of pool i, and when it
-- lapses unless the node says it again, in the hash P:cs<i> (node -> "cap:until"). The
-- pool's cap override is the least of those that have not lapsed, so one node's cap
-- never overwrites another's, and a node that died stops holding the pool down.
local function source_caps(i, at)
  local h = P .. ':cs' .. i
  local least = nil
  local all = rcall('HGETALL', h)
  for j = 1, #all, 2 do
    local cap, till = string.match(all[j + 1], '^(%d+):(%d+)$')
    cap, till = tonumber(cap), tonumber(till)
    if cap == nil or till <= at then
      rcall('HDEL', h, all[j])
    elseif least == nil or cap < least then
      least = cap
    end
  end
  return least
end

local function merge_caps(i, at)
  local least = source_caps(i, at)
  if least ~= pool(i).capo then
    set_cap(i, least, at)
  end
end

local function set_cap_from(i, source, cap, ttl, at)
  local h = P .. ':cs' .. i
  if cap then
    rcall('HSET', h, source, sformat('%d:%d', cap, at + ttl))
  else
    rcall('HDEL', h, source)
  end
  merge_caps(i, at)
end

-- The sweep lets the caps of silent nodes lapse.
local function lapse_caps(at)
  for i = 0, #spec.pools - 1 do
    if rcall('EXISTS', P .. ':cs' .. i) == 1 then
      merge_caps(i, at)
    end
  end
end

local function can_ever_fit(ps, class)
  for j = 1, #ps, 2 do
    if not can_ever_fit_pool(pool(ps[j]), class, ps[j + 1]) then
      return false
    end
  end
  return true
end

local function all_pools()
  local out = {}
  for i = 0, #spec.pools - 1 do
    out[#out + 1] = i
  end
  return out
end

local function settle(at)
  tick(at)
  local doomed = {}
  for _, raw in ipairs(rcall('HVALS', PT)) do
    local t = mp_unpack(raw)
    if not can_ever_fit(t.p, t.c) then
      doomed[#doomed + 1] = t
    end
  end
  table.sort(doomed, function(x, y)
    return order_of(x) < order_of(y)
  end)
  local ids = {}
  for _, t in ipairs(doomed) do
    ids[#ids + 1] = t.id
  end
  end_never_fitting(ids, {}, at)
  dispatch(all_pools(), at)
end

local function ticket_status(id)
  local t = get_ticket(id)
  if t then
    local pos, eta = position_of(t)
    return { 'w', pos, eta, t.d }
  end
  local raw = rcall('HGET', PE, s(id))
  if not raw then
    return nil
  end
  local e = mp_unpack(raw)
  return { 'e', outcome_out(e.o, e.l), e.a, b(e.f) }
end

local function ticket_read(id)
  local st = ticket_status(id)
  if not st then
    return false
  end
  local t = get_ticket(id)
  return { t and ticket_out(t) or false, st }
end

-- A pool list from the arguments: count, then pool, units pairs. Checked as check_pools.
local function check_pools(ps)
  if #ps == 0 then
    return 'no pools'
  end
  for j = 1, #ps, 2 do
    if ps[j] < 0 or ps[j] >= #spec.pools then
      return 'an unknown pool'
    end
    if ps[j + 1] == 0 then
      return 'units must be at least 1'
    end
    for m = 1, j - 2, 2 do
      if ps[m] == ps[j] then
        return 'a pool is named twice'
      end
    end
  end
  return nil
end

local function acquire(a)
  -- a: target ('f', flow | 'p', class, n, pool, units, ...), key, ttl, max_wait, meta, owner
  local ps, class, flow, ttl, max_wait
  local at = 4
  if a[3] == 'f' then
    local f = num(a[4])
    local fl = spec.flows[f + 1]
    if f < 0 or fl == nil then
      return fail('unknown_flow')
    end
    at = 5
    ps, class, flow = fl.pools, fl.class, f
    ttl = opt_num(a[at + 1]) or fl.ttl
    max_wait = 0
    if fl.queue then
      max_wait = opt_num(a[at + 2]) or fl.queue.max_wait
    end
  else
    class = tonumber(a[4])
    local n = tonumber(a[5])
    ps = {}
    for j = 1, 2 * n do
      ps[j] = tonumber(a[5 + j])
    end
    at = 6 + 2 * n
    if class < 0 or class >= #spec.classes then
      return fail('unknown_class')
    end
    local bad = check_pools(ps)
    if bad then
      return fail('bad_pools', bad)
    end
    ttl = opt_num(a[at + 1]) or spec.default_ttl
    max_wait = opt_num(a[at + 2]) or 0
  end
  local key, meta, owner = opt_str(a[at]), opt_str(a[at + 3]), opt_str(a[at + 4])
  if key then
    -- (A key whose lease or ticket is gone, left by a command that failed midway, is no
    -- key: the grant or ticket below takes it over. The lease is read from P:L, which the
    -- key's copy may outlive; a new key, the common case, costs no second look.)
    local kind, id = key_ref(key)
    local l = kind == 'L' and get_lease(id)
    local t = kind == 'T' and get_ticket(id)
    if l then
      return { 'ok', { 'G', id, true, lease_out(l) } }
    elseif t then
      local pos, eta = position_of(t)
      return { 'ok', { 'Q', id, pos, eta, t.d, true, ticket_out(t) } }
    end
  end
  if not can_ever_fit(ps, class) then
    EV[#EV + 1] = mp_pack({ 'J', class, ps, b(flow), b(key), 'n', now })
    return { 'ok', { 'J', 'n', 0 } }
  end
  local seq = next_of('seq')
  if admits_arrival(ps, class) then
    local id, _, lo = grant(ps, class, flow, key, ttl, meta, owner, now, nil)
    -- (The id's bytes are the lease's first item: lo's bytes after its one-byte header.)
    return { 'okp', OUT_G .. ssub(lo, 2, 1 + (UINT_LEN[sbyte(lo, 2)] or 1)) .. FALSE .. lo }
  end
  local room
  if flow then
    local q = spec.flows[flow + 1].queue
    room = not q or q.max_len < 0 or flow_waiting(flow) < q.max_len
  else
    room = spec.pools_max_len < 0 or tonumber(rcall('HGET', META, 'pw') or '0') < spec.pools_max_len
  end
  if max_wait == 0 or not room then
    local reason = 'q'
    if max_wait == 0 then
      reason = 'c'
    end
    local ra = retry_after(ps)
    EV[#EV + 1] = mp_pack({ 'J', class, ps, b(flow), b(key), reason, now })
    return { 'ok', { 'J', reason, ra } }
  end
  local id = next_of('id')
  local t = {
    id = id, k = key, c = class, f = flow, p = ps, s = seq, e = now, d = now + max_wait, t = ttl, m = meta, o = owner,
  }
  local pos, eta = arrival_position(t)
  enqueue(t)
  EV[#EV + 1] = mp_pack({ 'Q', ticket_out(t), pos })
  return { 'ok', { 'Q', id, pos, eta, t.d, false, ticket_out(t) } }
end

local function lease_ref(kind, v)
  if kind == 'i' then
    return tonumber(v)
  end
  local k, id = key_ref(v)
  if k == 'L' then
    return id
  end
  return nil
end

local function end_call(key, at)
  local k, id, l = key_ref(key)
  if k == 'L' then
    -- (A key whose lease is gone, left by a command that failed midway, ends nothing.)
    if drop_lease(l) > 0 then
      end_lease(l, at, false)
    else
      rcall('DEL', key_name(key))
    end
    return { 'r', id }
  end
  if k == 'T' and cancel(id, at) then
    return { 'c', id }
  end
  return { 'n', 0 }
end

local function check_pool(i)
  if i < 0 or i >= #spec.pools then
    return fail('bad_pools', 'no pool ' .. s(i))
  end
  return nil
end

-- ----- reconfiguration and opening ------------------------------------------------------------

-- Rebuilds every derived structure (pool counts, lines, needs, waiting counts) from the
-- stored leases and tickets under the spec `new` (same pools and classes in the same
-- order; flows remapped by name), keeping runtime limits (when the configured limit did
-- not change), caps and the mean hold times (to the millisecond, as a restart keeps them).
-- Returns each pool's (limit, cap) before.
local function rebuild(new)
  local old = spec
  local flow_map = {}
  for f, fl in ipairs(old.flows) do
    for g, nf in ipairs(new.flows) do
      if nf.name == fl.name then
        flow_map[f - 1] = g - 1
      end
    end
  end
  local before = {}
  local fresh = {}
  for i = 0, #new.pools - 1 do
    local p = pool(i)
    before[i] = { p.limit, p.cap, old.pools[i + 1].limit }
    local limit = new.pools[i + 1].limit
    if p.limit ~= old.pools[i + 1].limit and new.pools[i + 1].limit == old.pools[i + 1].limit then
      limit = p.limit
    end
    fresh[i] = { i = i, w = 0, limit = limit, cap = limit, capo = p.capo, had_capo = p.had_capo, used = 0, ubc = {}, needs = {}, touched = {},
      hold = math.floor(p.hold), ra = new.pools[i + 1].ra }
    for k = 0, #new.classes - 1 do
      fresh[i].ubc[k] = 0
    end
    for f, _ in pairs(p.touched) do
      fresh[i].touched[f] = true
    end
    for k, set in pairs(p.needs) do
      for n, _ in pairs(set) do
        fresh[i].touched['n' .. k .. ':' .. n] = true
      end
    end
    rcall('DEL', P .. ':q' .. i)
  end
  pools = fresh
  spec = new
  rcall('DEL', META)
  for _, raw in ipairs(rcall('ZRANGE', PL, 0, -1)) do
    local l = unpack_lease(raw)
    if l.f then
      l.f = flow_map[l.f]
      put_lease(l)
    end
    for j = 1, #l.p, 2 do
      local p = pool(l.p[j])
      p.used = p.used + l.p[j + 1]
      p.ubc[l.c] = (p.ubc[l.c] or 0) + l.p[j + 1]
    end
  end
  tickets = {}
  for _, raw in ipairs(rcall('HVALS', PT)) do
    local t = mp_unpack(raw)
    if t.f then
      t.f = flow_map[t.f]
    end
    enqueue(t)
  end
  local eo = rcall('LRANGE', PEO, 0, -1)
  for _, entry in ipairs(eo) do
    local _, id = string.match(entry, '^(%d+):(%d+)$')
    local raw = rcall('HGET', PE, id)
    if raw then
      local e = mp_unpack(raw)
      if e.f then
        e.f = flow_map[e.f]
        rcall('HSET', PE, id, mp_pack(e))
      end
    end
  end
  for i = 0, #spec.pools - 1 do
    local p = pool(i)
    p.cap = p.limit
    if p.capo then
      p.cap = math.min(p.capo, p.limit)
    end
  end
  return before
end

local function init(new)
  spec = new
  for i = 0, #spec.pools - 1 do
    local lim = spec.pools[i + 1].limit
    pools[i] = { i = i, w = 0, limit = lim, cap = lim, used = 0, ubc = {}, needs = {}, touched = {},
      hold = spec.default_hold, ra = spec.pools[i + 1].ra }
    for k = 0, #spec.classes - 1 do
      pools[i].ubc[k] = 0
    end
  end
end

local function same_names(a, c)
  if #a.pools ~= #c.pools or #a.classes ~= #c.classes then
    return false
  end
  for i, p in ipairs(a.pools) do
    if c.pools[i].name ~= p.name then
      return false
    end
  end
  for i, k in ipairs(a.classes) do
    if c.classes[i].name ~= k.name then
      return false
    end
  end
  return true
end

-- Loads a domain's state from the durable journal into an empty Redis (it restarted without
-- its data): the spec `new` (as `open` stores it) and `st` = { leases = {{id, key, class,
-- flow, {pool, units, ...}, granted, expires, ttl, meta, owner}, ...}, tickets = {{id, key,
-- class, flow, pools, seq, enqueued, deadline, ttl, meta, owner}, ...}, next_id, next_seq,
-- limits = {{pool, limit}, ...}, ended = {{id, outcome, lease, at, flow}, ...} oldest first }
-- (JSON; absent values false). Emits no events (a restart's
-- restore emits none either); the caller settles afterwards.
local function present(v)
  if v == nil or v == false or v == cjson.null then
    return nil
  end
  return v
end

-- A lease from its row: {id, key, class, flow, pools, granted, expires, ttl, meta, owner}.
local function lease_of_row(a)
  return { id = a[1], k = present(a[2]), c = a[3], f = present(a[4]), p = a[5], g = a[6], x = a[7], t = a[8],
    m = present(a[9]), o = present(a[10]) }
end

-- Puts a lease that comes from outside the ledger (a restore, an adoption) in its place:
-- counted in its pools, found by its key and its expiry, stored.
local function put_back(l)
  for j = 1, #l.p, 2 do
    local p = pool(l.p[j])
    p.used = p.used + l.p[j + 1]
    p.ubc[l.c] = (p.ubc[l.c] or 0) + l.p[j + 1]
  end
  local lo = mp_pack(lease_out(l))
  if l.k then
    rcall('SET', key_name(l.k), lo)
  end
  rcall('ZADD', PX, l.x, pad(l.id))
  rcall('ZADD', PL, l.id, lo)
end

local function reassert(new, st)
  init(new)
  for _, lim in ipairs(st.limits) do
    local p = pool(lim[1])
    p.limit = lim[2]
    p.cap = lim[2]
  end
  for _, a in ipairs(st.leases) do
    put_back(lease_of_row(a))
  end
  for _, a in ipairs(st.tickets) do
    enqueue({ id = a[1], k = present(a[2]), c = a[3], f = present(a[4]), p = a[5], s = a[6], e = a[7], d = a[8],
      t = a[9], m = present(a[10]), o = present(a[11]) })
  end
  for _, e in ipairs(st.ended or {}) do
    remember(e[1], e[2], present(e[3]), e[4], present(e[5]))
  end
  rcall('SET', P .. ':id', s(math.max(st.next_id - 1, 0)))
  rcall('SET', P .. ':seq', s(math.max(st.next_seq - 1, 0)))
  -- The nodes' presence as the restoring node last read it (Redis lost it): a node cut
  -- off from Redis may be admitting on its declared share, which stays held back until
  -- its hold-back ends. (The nodes that reach Redis say theirs again within a second; a
  -- presence said since Redis came back is newer and stays.)
  for _, n in ipairs(st.nodes or {}) do
    if n[3] > now and not rcall('ZSCORE', P .. ':nodes', n[1]) then
      local shares = {}
      for j, u in ipairs(n[4]) do
        shares[j] = s(u)
      end
      rcall('ZADD', P .. ':nodes', s(n[2]), n[1])
      rcall('HSET', P .. ':ns', n[1], s(n[3]) .. '|' .. table.concat(shares, ','))
    end
  end
end

-- ----- local fallback (crates/runtime/src/cluster/fallback.rs) ----------------------------------

-- How long the id of an adopted lease is remembered (P:A), so a retried adoption changes nothing.
local ADOPTED_KEEP_MS = 7 * 24 * 3600 * 1000

-- Leases a node granted on its own while Redis was unreachable, taken into the ledger once
-- each: {id, key, class, flow, pools, granted, expires, ttl, meta, owner, ended at | false,
-- expired}, times on Redis's clock. A lease the ledger holds already (restored from the
-- journal) is kept; a key another live lease holds stays with that lease. One that ended
-- locally is ended here too (granted first if new), so every node counts it once. Never
-- refused: a pool may go over its cap (an acknowledged lease is never revoked) and then
-- admits nothing until it is under it again. Answers how many were new, and how many ids
-- belonged to another lease (not taken).
local function adopt(list, at)
  local adopted, clashes = 0, 0
  for _, a in ipairs(list) do
    local mark = pad(a[1])
    if not rcall('ZSCORE', P .. ':A', mark) then
      rcall('ZADD', P .. ':A', at, mark)
      local l = get_lease(a[1])
      if l and (l.c ~= a[3] or cjson.encode(l.p) ~= cjson.encode(a[5])) then
        clashes = clashes + 1
        l = nil
      elseif not l then
        l = lease_of_row(a)
        if l.k and rcall('EXISTS', key_name(l.k)) == 1 then
          l.k = nil
        end
        put_back(l)
        EV[#EV + 1] = mp_pack({ 'G', lease_out(l), false })
        adopted = adopted + 1
      end
      local ended = present(a[11])
      if l and ended then
        take_lease(l.id)
        end_lease(l, ended, a[12] == true)
      end
    end
  end
  rcall('ZREMRANGEBYSCORE', P .. ':A', '-inf', at - ADOPTED_KEEP_MS)
  return adopted, clashes
end

-- Presence of the nodes with local_fallback pools: each says every second that it reaches
-- Redis, and the share of each pool it would take if it went local now. A node whose
-- presence lapsed is silent: its declared shares count as used for admission (held_back)
-- until its hold-back ends (its last presence + lapse + keep), so a node cut off from
-- Redis can admit on its share while the others go on in Redis. Forgets the nodes whose
-- hold-back ended; answers whether any silent node's hold-back ended here.
local function forget_lapsed(at)
  local ended = false
  for _, node in ipairs(rcall('ZRANGEBYSCORE', P .. ':nodes', '-inf', s(at))) do
    local ends = string.match(rcall('HGET', P .. ':ns', node) or '', '^(%d+)|')
    if not ends or tonumber(ends) <= at then
      rcall('ZREM', P .. ':nodes', node)
      rcall('HDEL', P .. ':ns', node)
      ended = true
    end
  end
  return ended
end

-- The nodes with local_fallback pools (at most the first 1000 by when they turn silent):
-- name, when it turns or turned silent, when the hold-back of its declared shares ends,
-- and those shares by pool.
local function node_list()
  local out = {}
  local all = rcall('ZRANGE', P .. ':nodes', 0, 999, 'WITHSCORES')
  for j = 1, #all, 2 do
    local ends, shares = string.match(rcall('HGET', P .. ':ns', all[j]) or '', '^(%d+)|(.*)$')
    local list = {}
    for u in string.gmatch(shares or '', '%d+') do
      list[#list + 1] = tonumber(u)
    end
    out[#out + 1] = { all[j], tonumber(all[j + 1]), tonumber(ends or '0'), list }
  end
  return out
end

-- The node's presence at `at` (Redis ms), silent from at + lapse; or with `most` nil its
-- clean leave. It declares, for each pool, the least of what it asks (`most`: `u0,u1,...`,
-- 0 for a pool it does not admit on alone) and its share of what is free now,
-- floor((cap - used - held back for the silent nodes) / nodes): held back until
-- at + lapse + keep if it goes silent. When a silent node's hold-back ends, every pool's
-- line is walked (what was held back is free). Answers the shares declared and what is
-- held back for silent nodes now, by pool, and every node as `node_list` gives them (the
-- node keeps them to put back if Redis restarts empty, see `reassert`).
local function presence(node, lapse, keep, most, nodes, at)
  local was = tonumber(rcall('ZSCORE', P .. ':nodes', node) or '')
  if most then
    rcall('ZADD', P .. ':nodes', at + lapse, node)
  else
    rcall('ZREM', P .. ':nodes', node)
    rcall('HDEL', P .. ':ns', node)
  end
  local ended = forget_lapsed(at)
  held = nil
  if ended or (was and was <= at) then
    dispatch(all_pools(), at)
  end
  local declared, holds = {}, {}
  if most then
    local i = 0
    for u in string.gmatch(most, '%d+') do
      if i < #spec.pools then
        local p = pool(i)
        local share = math.floor(math.max(0, p.cap - p.used - held_back(i)) / nodes)
        declared[#declared + 1] = math.min(tonumber(u), share)
      end
      i = i + 1
    end
    rcall('HSET', P .. ':ns', node, string.format('%d|%s', at + lapse + keep, table.concat(declared, ',')))
  end
  for i = 0, #spec.pools - 1 do
    holds[#holds + 1] = held_back(i)
  end
  return { 'H', declared, holds, node_list() }
end

-- ----- commands ---------------------------------------------------------------------------------

-- Runs the command CMD with ARGV: answers { 'ok', outcome } (a table, packed or converted by
-- the caller), { 'okp', outcome already packed } (a grant's or release's, whose lease bytes
-- its event shares), or fail(…).
local function run()
  if CMD == 'acquire' then
    return acquire(ARGV)
  elseif CMD == 'release' then
    local owner = opt_str(ARGV[5])
    local l
    if ARGV[3] == 'k' then
      -- By key: the key's string is read and deleted in one call (a release deletes it),
      -- and put back as it was when nothing is released.
      local name = key_name(ARGV[4])
      local r = rcall('GETDEL', name)
      local kind, id, kl = holder(r)
      if kind ~= 'L' or (owner and kl.o ~= owner) then
        if kind == 'L' and get_lease(id) then
          rcall('SET', name, r)
          return { 'ok', { 'O', id } }
        elseif kind == 'T' then
          rcall('SET', name, r)
        end
        return { 'ok', { 'R', false } }
      end
      l = kl
      l.key_taken = true
      -- (A key whose lease is gone releases nothing; its string is gone now too.)
      if drop_lease(l) == 0 then
        return { 'ok', { 'R', false } }
      end
      return { 'okp', OUT_R .. end_lease(l, now, false) }
    else
      local id = tonumber(ARGV[4])
      l = get_lease(id)
      if not l then
        return { 'ok', { 'R', false } }
      end
      if owner and l.o ~= owner then
        return { 'ok', { 'O', id } }
      end
      -- A take-back (RedisLedger::take_back) leaves a lease a retry by its key found.
      if ARGV[6] == 'unless_found' and rcall('EXISTS', P .. ':r:' .. s(id)) == 1 then
        return { 'ok', { 'R', false } }
      end
    end
    drop_lease(l)
    return { 'okp', OUT_R .. end_lease(l, now, false) }
  elseif CMD == 'found' then
    -- An acquire retried by key found lease ARGV[3], which its node is about to answer:
    -- marked, so that a take-back leaves it (above); 0 when it is no longer live (taken
    -- back first: the retry must not answer it).
    local id = tonumber(ARGV[3])
    if not get_lease(id) then
      return { 'ok', { 'F', 0 } }
    end
    rcall('SET', P .. ':r:' .. s(id), '1', 'PX', FOUND_MS)
    return { 'ok', { 'F', 1 } }
  elseif CMD == 'renew' then
    local id = lease_ref(ARGV[3], ARGV[4])
    local l, theirs
    if id then
      l, theirs = renew(id, opt_num(ARGV[5]), now, opt_str(ARGV[6]))
    end
    if theirs then
      return { 'ok', { 'O', id } }
    end
    return { 'ok', { 'N', l and lease_out(l) or false } }
  elseif CMD == 'cancel' then
    local id = tonumber(ARGV[3])
    if cancel(id, now) then
      return { 'ok', { 'K', 1 } }
    end
    if ticket_status(id) then
      return { 'ok', { 'K', 0 } }
    end
    return { 'ok', { 'K', -1 } }
  elseif CMD == 'end_call' then
    return { 'ok', { 'Z', end_call(ARGV[3], now) } }
  elseif CMD == 'repair' then
    local n_ended = tonumber(ARGV[3])
    local released, cancelled, renewed = {}, {}, 0
    for j = 1, n_ended do
      local key = ARGV[3 + j]
      local r = end_call(key, now)
      if r[1] == 'r' then
        released[#released + 1] = { key, r[2] }
      elseif r[1] == 'c' then
        cancelled[#cancelled + 1] = { key, r[2] }
      end
    end
    local n_renew = tonumber(ARGV[4 + n_ended])
    for j = 1, n_renew do
      local kind, id = key_ref(ARGV[4 + n_ended + j])
      if kind == 'L' and renew(id, nil, now) then
        renewed = renewed + 1
      end
    end
    return { 'ok', { 'P', released, cancelled, renewed } }
  elseif CMD == 'set_limit' or CMD == 'set_cap' then
    local i = tonumber(ARGV[3])
    local bad = check_pool(i)
    if bad then
      return bad
    end
    if CMD == 'set_limit' then
      set_limit(i, tonumber(ARGV[4]), now)
    elseif ARGV[5] and ARGV[5] ~= '' then
      -- A node's own cap (cluster mode): ARGV[5] the node, ARGV[6] how long it holds (ms).
      set_cap_from(i, ARGV[5], opt_num(ARGV[4]), tonumber(ARGV[6]) or 0, now)
    else
      set_cap(i, opt_num(ARGV[4]), now)
    end
    return { 'ok', { 'V', view(i) } }
  elseif CMD == 'tick' then
    tick(now)
    lapse_caps(now)
    if forget_lapsed(now) then
      held = nil
      dispatch(all_pools(), now)
    end
    return { 'ok', { 'D' } }
  elseif CMD == 'settle' then
    settle(now)
    return { 'ok', { 'D' } }
  elseif CMD == 'reconfigure' then
    local new = cjson.decode(ARGV[3])
    if not same_names(spec, new) then
      return fail('invalid', 'the pools and classes must stay the same, in the same order')
    end
    local before = rebuild(new)
    store_spec(ARGV[3])
    -- Caps as the caller gives them: each pool with one hears of it (a limit event).
    for i = 0, #spec.pools - 1 do
      local cap = opt_num(ARGV[4 + i])
      local p = pool(i)
      p.capo = nil
      p.cap = p.limit
      if cap then
        set_cap(i, cap, now)
      end
    end
    for i = 0, #spec.pools - 1 do
      local p = pool(i)
      local was = before[i]
      if p.limit ~= was[1] or p.cap ~= was[2] or spec.pools[i + 1].limit ~= was[3] then
        set_limit(i, p.limit, now)
      end
    end
    settle(now)
    return { 'ok', { 'D' } }
  elseif CMD == 'presence' then
    -- ARGV: node, lapse (ms), keep (ms), the most it asks of each pool ("": the node
    -- leaves), how many nodes share the domain.
    local lapse, keep, nodes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
    if not lapse or not keep or not nodes or nodes < 1 or not string.match(ARGV[6], '^[%d,]*$') then
      return fail('invalid', 'presence: lapse, keep, shares and nodes must be numbers')
    end
    return { 'ok', presence(ARGV[3], lapse, keep, ARGV[6] ~= '' and ARGV[6] or nil, nodes, now) }
  elseif CMD == 'adopt' then
    local adopted, clashes = adopt(cjson.decode(ARGV[3]), now)
    return { 'ok', { 'n', adopted, clashes } }
  elseif CMD == 'reserve_ids' then
    -- A block of ids for a node's local fallback: never handed out by the ledger.
    return { 'ok', { 'n', rcall('INCRBY', P .. ':id', tonumber(ARGV[3])) } }
  elseif CMD == 'reassert' then
    -- Only into an empty domain, atomically: a second node that tries too changes nothing.
    -- A domain that was opened but has never handed out an id or an arrival number (a
    -- node opened it on an emptied Redis before the state came back) counts as empty.
    if spec and (rcall('EXISTS', P .. ':id') == 1 or rcall('EXISTS', P .. ':seq') == 1) then
      return { 'ok', { 'K', 0 } }
    end
    forget_keys()
    rcall('DEL', META, PL, PT, PX, PD)
    reassert(cjson.decode(ARGV[3]), cjson.decode(ARGV[4]))
    store_spec(ARGV[3])
    return { 'ok', { 'K', 1 } }
  elseif CMD == 'open' then
    -- A new backend instance over the keys: the state is kept (as a restart restores
    -- it); mean hold times are kept to the millisecond, as a restart keeps them. A spec
    -- that changed is taken as a reload would take it, without events (a restart's
    -- restore emits none either). Refused when the pools or classes changed.
    local new = cjson.decode(ARGV[3])
    if not spec then
      init(new)
      store_spec(ARGV[3])
      return { 'ok', { 'D' } }
    end
    if not same_names(spec, new) then
      return fail('invalid', 'the pools and classes in Redis differ from the configuration')
    end
    rebuild(new)
    store_spec(ARGV[3])
    EV = {}
    return { 'ok', { 'D' } }
  -- ----- reads (they change nothing) -----
  elseif CMD == 'r_lease' then
    local id = lease_ref(ARGV[3], ARGV[4])
    local l = id and get_lease(id)
    return { 'ok', l and lease_out(l) or false }
  elseif CMD == 'r_ticket' then
    local id = tonumber(ARGV[3])
    if ARGV[3] == 'k' then
      local kind, tid = key_ref(ARGV[4])
      if kind ~= 'T' then
        return { 'ok', false }
      end
      id = tid
    end
    return { 'ok', ticket_read(id) }
  elseif CMD == 'r_pools' then
    local out = {}
    for i = 0, #spec.pools - 1 do
      out[#out + 1] = view(i)
    end
    return { 'ok', out }
  elseif CMD == 'r_leases' then
    -- Live leases by id after ARGV[3], at most ARGV[4] (0: all).
    local n = tonumber(ARGV[4])
    local out = {}
    local raws
    if n == 0 then
      raws = rcall('ZRANGE', PL, 0, -1)
    else
      raws = rcall('ZRANGEBYSCORE', PL, '(' .. ARGV[3], '+inf', 'LIMIT', 0, n)
    end
    for _, raw in ipairs(raws) do
      out[#out + 1] = mp_unpack(raw)
    end
    return { 'ok', out }
  elseif CMD == 'r_tickets' then
    local out = {}
    for _, raw in ipairs(rcall('HVALS', PT)) do
      out[#out + 1] = ticket_out(mp_unpack(raw))
    end
    return { 'ok', out }
  elseif CMD == 'r_waiting' then
    local limit = tonumber(ARGV[3])
    local all = {}
    for _, raw in ipairs(rcall('HVALS', PT)) do
      local t = mp_unpack(raw)
      tickets[t.id] = t
      all[#all + 1] = t
    end
    table.sort(all, function(x, y)
      local px, py = spec.classes[x.c + 1].priority, spec.classes[y.c + 1].priority
      if px ~= py then
        return px > py
      end
      return x.s < y.s
    end)
    local out = {}
    for j = 1, math.min(limit, #all) do
      local pos, eta = position_of(all[j])
      out[#out + 1] = { ticket_out(all[j]), pos, eta }
    end
    return { 'ok', out }
  elseif CMD == 'r_counts' then
    return { 'ok', { rcall('ZCARD', PL), rcall('HLEN', PT) } }
  elseif CMD == 'r_events' then
    -- Committed events after stream id ARGV[3] ("": from the oldest kept), at most ARGV[4].
    local from = '-'
    if ARGV[3] ~= '' then
      from = '(' .. ARGV[3]
    end
    return { 'ok', rcall('XRANGE', PEV, from, '+', 'COUNT', tonumber(ARGV[4])) }
  elseif CMD == 'r_nodes' then
    return { 'ok', node_list() }
  elseif CMD == 'r_counters' then
    local id = tonumber(rcall('GET', P .. ':id') or '0')
    local seq = tonumber(rcall('GET', P .. ':seq') or '0')
    return { 'ok', { id + 1, seq + 1 } }
  end
  return fail('invalid', 'unknown command ' .. tostring(CMD))
end

-- A duty's command sent with its lease's fencing token (ARGV: 'fenced', now, duty, token,
-- the command, its arguments): run only while the duty lease (`P:duty:<duty>`, holding
-- `<node>|<token>`, see duty.rs) is held with that token, checked in this same call. A
-- former holder that was paused past its lease, or cut off, and sends a sweep after
-- another node took over changes nothing, and is told why. Unwraps ARGV to the command's
-- own shape; answers the refusal, or nil to go on.
local function fenced()
  local duty, token, inner = ARGV[3], ARGV[4], ARGV[5]
  if inner ~= 'tick' and inner ~= 'repair' and inner ~= 'set_limit' then
    return fail('invalid', 'only a sweep, a reconciliation or an alert\'s limit change is fenced')
  end
  local cur = rcall('GET', P .. ':duty:' .. duty)
  local held = cur and string.match(cur, '|(%d+)$')
  if held ~= token then
    local why = 'nobody holds it now (it ran out)'
    if held then
      why = 'another holder has token ' .. held
    end
    return fail('fenced', 'the duty lease `' .. duty .. '` is no longer held with token ' .. token .. ': '
      .. why .. '; nothing was changed')
  end
  table.remove(ARGV, 3)
  table.remove(ARGV, 3)
  table.remove(ARGV, 3)
  ARGV[1] = inner
  CMD = inner
  return nil
end

-- The commands a batch may carry (batch.rs): the request paths'.
local BATCHED = { acquire = true, release = true, renew = true, cancel = true, end_call = true }

-- The commands run by `run_guarded`: those a node sends all the time and that change only
-- leases, tickets and the pools' counts.
local GUARDED = { acquire = true, release = true, renew = true, cancel = true, end_call = true, tick = true, repair = true }

-- `run`, for a command that may fail midway: a bug, or a key of the domain changed by
-- hand. Redis functions do not roll back, so what the command wrote before the error
-- stays, while the pools in memory may count only part of it (a lease stored without its
-- units would let the ledger admit past the limit). The command answers an error, its
-- events are dropped, and the pools' counts, lines and waiting counts are taken again from
-- the leases and tickets stored, as a reload does (`rebuild`): the pools count exactly
-- what is held. In a batch, the commands before it keep their answers, events and counts,
-- and those after it run. A key, expiry or deadline it left without its lease or ticket
-- is dropped where it is next met (acquire, tick).
local function run_guarded()
  local first = #EV + 1
  local ok, result = pcall(run)
  if ok then
    return result
  end
  local message = type(result) == 'table' and (result.err or result.msg) or tostring(result)
  redis.log(redis.LOG_WARNING, 'callgate: the ledger command ' .. CMD .. ' failed (' .. message
    .. '); counting the pools again from the leases and tickets held')
  -- (Its events are dropped; in a batch, those of the commands before it stay.)
  for k = #EV, first, -1 do
    EV[k] = nil
  end
  rebuild(spec)
  recounted = true
  return fail('internal', 'the ledger command ' .. CMD .. ' failed: ' .. message)
end

-- The header of a MessagePack array of n items, as cmsgpack writes it.
-- The headers of arrays of 0 to 15 items (one byte each), made by the first call (a
-- library may not use `string` while it loads).
local FIX_HEADERS = {}

local function array_header(n)
  if n < 16 then
    return FIX_HEADERS[n], 1
  elseif n < 65536 then
    return string.char(0xdc, math.floor(n / 256), n % 256), 3
  end
  return string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
    n % 256), 5
end

-- The head of a command's answer in a batch: an array of 3 (0x93) and 'okd' (0xa3: a
-- string of 3).
local HEAD_OKD = '\147\163okd'

-- A change's answer, kept (when the caller tagged the call) for the caller to read should
-- the reply never reach it (a connection that broke after the call was sent): P:o:<origin>
-- holds the last such answer, with its tag.
local function answered(reply)
  if ORIGIN then
    local kept
    if reply[1] == 'okB' then
      -- A batch's answer is its time and one packed string: kept as they are (`B<now>\n`
      -- and the string), where packing them again cost as much as the SET.
      kept = TAG .. '\nB' .. s(reply[2]) .. '\n' .. reply[3]
    else
      kept = TAG .. '\n' .. mp_pack(reply)
    end
    rcall('SET', P .. ':o:' .. ORIGIN, kept, 'PX', ANSWER_KEPT_MS)
  end
  return reply
end

-- ARGV: 'kept', now, the tag of a call whose reply never reached its node. Answers
-- 'kept' and the call's answer, if Redis ran it (a batch's as it answered it, any other
-- packed as `answered` kept it); otherwise 'gone',
-- and the call is given up: should it still come (it was sent, and may wait in Redis's
-- input), it is refused (P:oc:<origin>).
local function kept(tag)
  local origin = string.match(tag or '', '^(.*)%.%d+$')
  if not origin then
    return fail('invalid', 'kept: a tag <origin>.<k> expected')
  end
  local answer = rcall('GET', P .. ':o:' .. origin)
  if answer and ssub(answer, 1, #tag + 1) == tag .. '\n' then
    local body = ssub(answer, #tag + 2)
    local at, packed = string.match(body, '^B(%d+)\n(.*)$')
    if at then
      return { 'kept', { 'okB', tonumber(at), packed } }
    end
    return { 'kept', body }
  end
  rcall('SET', P .. ':oc:' .. origin, tag, 'PX', ANSWER_KEPT_MS)
  return { 'gone' }
end

-- Adds this call's events (packed) to the domain's stream, with the caller's tag if it
-- gave one.
local function xadd(packed)
  if STREAM_TAG == '' then
    rcall('XADD', PEV, 'MAXLEN', '~', STREAM_LEN, '*', 'e', packed, 'n', s(now))
  else
    rcall('XADD', PEV, 'MAXLEN', '~', STREAM_LEN, '*', 'e', packed, 'n', s(now), 'o', STREAM_TAG)
  end
end

-- ARGV: 'batch', now, then per command the count of strings that follow (its name and
-- arguments), its name and its arguments. Runs them one after another as single calls
-- would run, with one clock reading, one save of the pools and one stream entry (the
-- commands' events in order). Answers 'okB', now, and one MessagePack array with per
-- command 'okd', its outcome and its events, or 'err' with code and message (one string:
-- Redis and the node's parser handle one value where they handled three per command).
local function batch(args)
  local out = {}
  local count = 0
  -- One list of events for the whole batch (its stream entry): each command's are those
  -- it added, from `first` on.
  EV = {}
  local j = 3
  left = 0
  while j <= #args do
    if args[j + 1] == 'acquire' then
      left = left + 1
    end
    j = j + num(args[j]) + 1
  end
  j = 3
  while j <= #args do
    local n = num(args[j])
    -- (One constructor: the table is sized once, where growing it item by item resized it
    -- for every power of two.)
    local sub = { args[j + 1], args[2], unpack(args, j + 2, j + n) }
    j = j + n + 1
    CMD, ARGV = sub[1], sub
    local first = #EV + 1
    local result
    if BATCHED[CMD] then
      result = run_guarded()
    else
      result = fail('invalid', 'a batch carries only the request paths\' commands')
    end
    local tag = result[1]
    local last = #EV
    if tag == 'ok' or tag == 'okp' then
      out[#out + 1] = HEAD_OKD
      out[#out + 1] = tag == 'okp' and result[2] or mp_pack(result[2])
      out[#out + 1] = array_header(last - first + 1)
      if last == first then
        out[#out + 1] = EV[first]
      elseif last > first then
        out[#out + 1] = table.concat(EV, '', first, last)
      end
    else
      for k = last, first, -1 do
        EV[k] = nil
      end
      out[#out + 1] = mp_pack({ 'err', result[2], result[3] or result[2] })
    end
    count = count + 1
    if CMD == 'acquire' then
      left = left - 1
    end
  end
  give_back()
  save_pools()
  if #EV > 0 then
    xadd(array_header(#EV) .. table.concat(EV))
  end
  return { 'okB', now, array_header(count) .. table.concat(out) }
end

-- The names of a domain's keys, by the name of its first (META), made once.
local names = {}
local names_count = 0

local function call(keys, args)
  rcall, mp_pack, mp_unpack, mp_unpack_limit = redis.call, cmsgpack.pack, cmsgpack.unpack, cmsgpack.unpack_limit
  sformat, ssub, sbyte = string.format, string.sub, string.byte
  if not FIX_HEADERS[0] then
    for k = 0, 15 do
      FIX_HEADERS[k] = string.char(0x90 + k)
    end
    for k = 0, 255 do
      SMALL_S[k] = string.format('%d', k)
      SMALL[SMALL_S[k]] = k
    end
    for k = 0, 16 do
      ZEROS[k] = string.rep('0', k)
    end
  end
  KEYS, ARGV = keys, args
  META = KEYS[1]
  local n = names[META]
  if not n then
    local p = ssub(META, 1, -3)
    n = { p, p .. ':L', p .. ':T', p .. ':x', p .. ':d', p .. ':E', p .. ':EO', p .. ':k:', {}, {}, p .. ':events' }
    if names_count >= 256 then
      names, names_count = {}, 0
    end
    names[META] = n
    names_count = names_count + 1
  end
  P, PL, PT, PX, PD, PE, PEO, PKEY, POOL_KEYS, COUNTER_KEYS, PEV = n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9],
    n[10], n[11]
  CMD = ARGV[1]
  EV, pools, tickets, counters, left, now_packed, recounted, held = {}, {}, {}, {}, 1, nil, false, nil
  local at, tag = string.match(ARGV[2], '^(%d*)|?(.*)$')
  TAG = tag or ''
  STREAM_TAG = TAG
  if ssub(TAG, 1, 1) == '~' then
    TAG = ssub(TAG, 2)
    STREAM_TAG = ''
  end
  ORIGIN = string.match(TAG, '^(.*)%.%d+$')
  local raw_spec = rcall('GET', P .. ':s')
  if not raw_spec and CMD ~= 'open' and CMD ~= 'reassert' then
    return fail('missing', 'the ledger has no state in Redis (was Redis restarted empty?)')
  end
  -- Its node gave this call up (its reply timed out before Redis ran it: `kept`).
  if ORIGIN and rcall('GET', P .. ':oc:' .. ORIGIN) == TAG then
    return fail('unavailable', 'this command was given up: its reply was lost before Redis ran it')
  end
  if CMD == 'kept' then
    return kept(ARGV[3])
  end
  if not at or at == '' then
    local t = rcall('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  else
    now = tonumber(at)
  end
  spec = nil
  local old_layout = false
  if raw_spec then
    local cached = specs[P]
    if cached and cached.raw == raw_spec then
      spec, old_layout = cached.spec, cached.old
    else
      old_layout = ssub(raw_spec, 1, #LAYOUT_HEAD) ~= LAYOUT_HEAD
      local json = raw_spec
      if not old_layout then
        json = ssub(raw_spec, #LAYOUT_HEAD + 1)
      end
      spec = cjson.decode(json)
      if spec_count >= 256 then
        specs, spec_count = {}, 0
      end
      if not cached then
        spec_count = spec_count + 1
      end
      specs[P] = { raw = raw_spec, spec = spec, old = old_layout }
    end
  end
  if old_layout then
    if CMD == 'open' then
      migrate(raw_spec)
    elseif CMD ~= 'reassert' then
      return fail('layout', 'the domain\'s state in Redis has the layout of an older callgate (its idempotency keys '
        .. 'in one hash): stop the nodes of older versions on this domain, then start one of this version, whose '
        .. 'opening migrates it')
    end
  end
  if CMD == 'batch' then
    return answered(batch(args))
  end
  if CMD == 'fenced' then
    local refused = fenced()
    if refused then
      return refused
    end
  end
  local result
  if GUARDED[CMD] then
    result = run_guarded()
  else
    result = run()
  end
  if result[1] ~= 'ok' and result[1] ~= 'okp' then
    if recounted then
      give_back()
      save_pools()
    end
    return answered(result)
  end
  if ssub(CMD, 1, 2) ~= 'r_' then
    give_back()
    save_pools()
    -- A change answers its outcome and events packed: Redis converts a string in one step
    -- where it walks each nested table of an answer (and looks in each for the fields of
    -- its special replies), which cost more than the command itself.
    local ev = array_header(#EV) .. table.concat(EV)
    if #EV > 0 and CMD ~= 'open' then
      xadd(ev)
    end
    local packed = result[1] == 'okp' and result[2] or mp_pack(result[2])
    return answered({ 'okp', packed, ev, now })
  end
  return { 'ok', result[2], EV, now }
end

redis.register_function('__CALLGATE_FUNCTION__', call)
