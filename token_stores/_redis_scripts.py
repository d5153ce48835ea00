"""The Lua scripts of the Redis store: each runs atomically on the server."""

__all__ = ["COMPARE_AND_SET", "DROP_HOLDER", "SAVE", "TAKE_HOLDER"]

# Writes the token only if the stored fingerprint is the expected one
# ("" = nothing stored), and announces the change. One script, so no other
# client can write in between. A key of another type fails the HGET (WRONGTYPE)
# before anything is written.
COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], 'fp')
if (current == false and ARGV[1] == '') or current == ARGV[1] then
    redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'data', ARGV[3], 'enc', ARGV[4], 'key', ARGV[5])
    if tonumber(ARGV[6]) > 0 then
        redis.call('PEXPIRE', KEYS[1], ARGV[6])
    else
        redis.call('PERSIST', KEYS[1])
    end
    redis.call('PUBLISH', ARGV[7], ARGV[8])
    return 1
end
return 0
"""
# Writes the token whatever is stored. A key of another type is another
# program's: refused before anything is written (a transaction would still
# run the PEXPIRE after HSET failed, and the key would expire).
SAVE = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE the token key holds a ' .. kind .. ', not a hash')
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'data', ARGV[2], 'enc', ARGV[3], 'key', ARGV[4])
if tonumber(ARGV[5]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
else
    redis.call('PERSIST', KEYS[1])
end
return 1
"""
# Records this holder of an account's lock; returns the previous one's record
# if it never released (its lease ran out while it was paused or had died).
TAKE_HOLDER = """
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return previous
"""
DROP_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
