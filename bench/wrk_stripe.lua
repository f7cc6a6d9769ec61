-- wrk script: POST a freshly signed Stripe webhook with a new event id on every request.
--
-- Environment (set by bench/loadgen.py): BENCH_SECRET (the whsec_ signing secret), BENCH_PREFIX_FILE and
-- BENCH_SUFFIX_FILE (the body around the 24-character event id slot), BENCH_TAG (a run tag), BENCH_PATH.
-- HMAC-SHA256 comes from the libcrypto wrk is linked with, through LuaJIT's FFI, so signing costs microseconds.
-- done() prints one line "WRKJSON {...}" with the totals and latency percentiles (microseconds).

local ffi = require("ffi")
ffi.cdef [[
const void *EVP_sha256(void);
unsigned char *HMAC(const void *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]]

local function crypto()
  local ok = pcall(function() return ffi.C.HMAC end)
  if ok then return ffi.C end
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1" }) do
    local loaded, lib = pcall(ffi.load, name)
    if loaded then return lib end
  end
  error("libcrypto not found for HMAC-SHA256")
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local counter = 0

function setup(thread)
  local n = (tags or 0) + 1
  tags = n
  thread:set("thread_tag", string.char(96 + n))
end

function init(args)
  C = crypto()
  sha256 = C.EVP_sha256()
  secret = os.getenv("BENCH_SECRET")
  prefix = slurp(os.getenv("BENCH_PREFIX_FILE"))
  suffix = slurp(os.getenv("BENCH_SUFFIX_FILE"))
  path = os.getenv("BENCH_PATH") or "/webhooks/stripe"
  tag = (os.getenv("BENCH_TAG") or "run") .. (thread_tag or "a")
  md = ffi.new("unsigned char[32]")
  md_len = ffi.new("unsigned int[1]")
  hex = {}
  for i = 0, 255 do hex[i] = string.format("%02x", i) end
  digest = {}
  width = 24 - #tag
  fmt = "%0" .. width .. "d"
end

function request()
  counter = counter + 1
  local body = prefix .. tag .. string.format(fmt, counter) .. suffix
  local t = tostring(os.time())
  local signed = t .. "." .. body
  C.HMAC(sha256, secret, #secret, signed, #signed, md, md_len)
  for i = 0, 31 do digest[i + 1] = hex[md[i]] end
  return wrk.format("POST", path, {
    ["Stripe-Signature"] = "t=" .. t .. ",v1=" .. table.concat(digest),
    ["Content-Type"] = "application/json; charset=utf-8",
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
