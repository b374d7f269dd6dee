#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/ (R9, issue 8).

Run from anywhere: python3 fuzz/gen_seeds.py.  Deterministic: the files it
writes are committed, and re-running it rewrites them byte for byte.  Seeds
that libFuzzer found (crash regressions, named regress-*) and the copies of
schemas/*.json are not written here and are never deleted by it.
"""
import json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def mp(v):
    """A minimal msgpack encoder (smallest int forms, float64, str, array, map)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 1 << 8:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v < 1 << 16:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v < 1 << 64:
            return b"\xcf" + struct.pack(">Q", v)
        if v >= -(1 << 7):
            return b"\xd0" + struct.pack(">b", v)
        if v >= -(1 << 15):
            return b"\xd1" + struct.pack(">h", v)
        if v >= -(1 << 31):
            return b"\xd2" + struct.pack(">i", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        n = len(b)
        if n < 32:
            return bytes([0xA0 | n]) + b
        if n < 256:
            return b"\xd9" + bytes([n]) + b
        if n < 65536:
            return b"\xda" + struct.pack(">H", n) + b
        return b"\xdb" + struct.pack(">I", n) + b
    if isinstance(v, list):
        n = len(v)
        h = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return h + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        h = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return h + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


RECORD = {"name": "Ada Lovelace", "email": "ada@example.org", "age": 36, "score": 0.5,
          "vip": True, "tags": ["math", "poet"], "extra": {"k": [1, None, 2.5]},
          "notes": "caf\u00e9 \u2603 \U0001F600"}

# ---- json ----
put("json", "record.json", json.dumps(RECORD, ensure_ascii=False))
put("json", "request.json", '{"ref": 7, "op": "query", "collection": "contacts", '
    '"where": {"city": "Berlin", "credit_limit": {"gte": 100}}, "limit": 10}')
put("json", "depth32.json", "[" * 32 + "]" * 32)
put("json", "depth33.json", "[" * 33 + "]" * 33)
put("json", "depth-maps33.json", '{"a":' * 33 + "1" + "}" * 33)
put("json", "numbers.json", "[9223372036854775807, -9223372036854775808, 9223372036854775808, "
    "1e308, 1e309, -0.0, 0, -0, 0.1, 5e-324, 2.2250738585072014e-308, 1E+2, 123456789012345678901234567890, "
    "9007199254740993, 1.0, 100000000000000000000.0]")
put("json", "escapes.json", r'["\u0000", "\ud83d\ude00", "\"\\\/\b\f\n\r\t", "\u00e9", "\uffff"]')
put("json", "lone-surrogate.json", r'["\ud800"]')
put("json", "nul-key.json", r'{"a\u0000b": 1}')
put("json", "dup-key.json", '{"a": 1, "a": 2}')
put("json", "bad-utf8.json", b'["\xc3\x28", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"]')
put("json", "trailing.json", '{"a": 1} x')
put("json", "empty.json", "")
put("json", "scalars.json", 'true')
put("json", "string-top.json", '"only a string"')
put("json", "unicode-keys.json", '{"\u00fc": 1, "\u65e5\u672c": [], "": {}}')
put("json", "ws.json", ' \n\t{ "a" : [ 1 , 2 ] }\r\n ')

# ---- msgpack ----
put("msgpack", "record.mp", mp(RECORD))
put("msgpack", "request.mp", mp({"ref": 1, "op": "create", "collection": "contacts",
                                 "record": {"name": "X", "credit_limit": 5}}))
put("msgpack", "ints.mp", mp([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
                              -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]))
put("msgpack", "floats.mp", mp([0.0, -0.0, 0.1, 1e308, 5e-324, 1.0]) +
    b"")  # float64 only from mp(); float32 below
put("msgpack", "float32.mp", b"\x92\xca\x3f\x80\x00\x00\xca\x80\x00\x00\x00")
put("msgpack", "nan.mp", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00")
put("msgpack", "inf32.mp", b"\xca\x7f\x80\x00\x00")
put("msgpack", "uint64-big.mp", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
put("msgpack", "giant-array32.mp", b"\xdd\x05\xf5\xe1\x00")       # 100 million items
put("msgpack", "giant-map32.mp", b"\xdf\xff\xff\xff\xff")
put("msgpack", "giant-array16.mp", b"\xdc\xff\xff\xc0")
put("msgpack", "giant-str32.mp", b"\xdb\x7f\xff\xff\xff" + b"a")
put("msgpack", "giant-nested.mp", b"\x91" * 20 + b"\xdd\x00\x10\x00\x00")
put("msgpack", "depth32.mp", b"\x91" * 31 + b"\x90")
put("msgpack", "depth33.mp", b"\x91" * 32 + b"\x90")
put("msgpack", "bin.mp", b"\xc4\x03abc")
put("msgpack", "ext.mp", b"\xd4\x01\x02")
put("msgpack", "timestamp-ext.mp", b"\xd6\xff\x00\x00\x00\x01")
put("msgpack", "never-used.mp", b"\xc1")
put("msgpack", "dup-key.mp", b"\x82\xa1a\x01\xa1a\x02")
put("msgpack", "int-key.mp", b"\x81\x01\x02")
put("msgpack", "nul-key.mp", b"\x81\xa3a\x00b\x01")
put("msgpack", "bad-utf8.mp", b"\x92\xa2\xc3\x28\xa3\xed\xa0\x80")
put("msgpack", "trailing.mp", b"\x90\x90")
put("msgpack", "truncated.mp", b"\x82\xa1a")
put("msgpack", "empty.mp", b"")
put("msgpack", "str8-16-32.mp", b"\x93\xd9\x01x\xda\x00\x01y\xdb\x00\x00\x00\x01z")
put("msgpack", "map16.mp", mp({"k%02d" % i: i for i in range(20)}))

# ---- schema: the bundled schemas, the harness's own, and broken ones ----
for f in sorted(os.listdir(os.path.join(ROOT, "schemas"))):
    if f.endswith(".json"):
        shutil.copyfile(os.path.join(ROOT, "schemas", f), os.path.join(CORPUS, "schema", "bundled-" + f))
people = {"collection": "people", "strict": True, "id_prefix": "p_", "fields": {
    "name": {"type": "string", "required": True, "max": 100, "index": True},
    "email": {"type": "string", "index": "unique"},
    "age": {"type": "int", "min": 0, "max": 200, "index": True, "default": 1},
    "score": {"type": "number", "index": True},
    "vip": {"type": "bool", "default": False},
    "born": {"type": "timestamp", "index": True},
    "tier": {"type": "enum", "values": ["gold", "silver", "bronze"], "index": True, "default": "gold"},
    "org": {"type": "ref", "to": "orgs", "index": True},
    "tags": {"type": "array", "items": "string", "max": 10},
    "extra": {"type": "map"}}}
put("schema", "people.json", json.dumps(people))
put("schema", "loose.json", json.dumps({"collection": "loose", "strict": False, "fields": {}}))
put("schema", "bad-type.json", json.dumps({"collection": "x", "fields": {"a": {"type": "text"}}}))
put("schema", "bad-enum.json", json.dumps({"collection": "x", "fields": {"a": {"type": "enum"}}}))
put("schema", "bad-bounds.json", json.dumps({"collection": "x", "fields": {"a": {"type": "int", "min": 5, "max": 1}}}))
put("schema", "bad-default.json", json.dumps({"collection": "x", "fields": {"a": {"type": "int", "default": "no"}}}))
put("schema", "system-field.json", json.dumps({"collection": "x", "fields": {"_rev": {"type": "int"}}}))
put("schema", "bad-name.json", json.dumps({"collection": "../etc", "fields": {}}))
put("schema", "roles-fixed.json", json.dumps({"roles": {
    "clerk": {"people": ["read", "write", "subscribe"], "orgs": ["read"], "methods": ["people.*"]},
    "auditor": {"*": ["read"], "people": {"can": ["read"], "hide": ["email", "born"]}},
    "nothing": {}}}))
put("schema", "roles-bad.json", json.dumps({"roles": {
    "admin": {"people": ["read"]}, "x": {"ghosts": ["read"]}, "y": {"people": ["fly"]},
    "z": {"people": {"can": ["read"], "hide": ["nope"]}}}}))

# ---- filter: every operator, on the fixed "people" collection ----
wheres = {
    "empty": {}, "eq-str": {"name": "Ada"}, "eq-op": {"name": {"eq": "Bob"}},
    "ne": {"score": {"ne": 0}}, "lt": {"age": {"lt": 36}}, "lte": {"born": {"lte": 0}},
    "gt": {"age": {"gt": 10}}, "gte-lt": {"age": {"gte": 0, "lt": 100}},
    "in": {"tier": {"in": ["gold", "bronze"]}}, "in-empty": {"age": {"in": []}},
    "prefix": {"name": {"prefix": "Ad"}}, "prefix-empty": {"name": {"prefix": ""}},
    "null": {"email": None}, "eq-null": {"email": {"eq": None}}, "bool": {"vip": True},
    "array": {"tags": "a"}, "ref": {"org": "o_1"}, "map-eq": {"extra": {"k": 1}},
    "mixed-num": {"score": {"gte": 36, "lte": 36.0}}, "big": {"score": {"lt": 1e300}},
    "int-num": {"age": 36.0}, "unknown-field": {"unknown": 1}, "bad-op": {"age": {"bogus": 1}},
    "system": {"id": {"prefix": "p_"}, "_rev": {"gte": 1}}, "multi": {"name": {"prefix": "A"}, "age": {"gt": 0}},
    "type-mismatch": {"age": "old"}, "in-mixed": {"score": {"in": [36, 0.5, "x", None]}},
    "range-empty": {"age": {"gt": 100, "lt": 50}}, "int64-edge": {"born": {"gte": 9223372036854775807}},
}
for k, v in wheres.items():
    put("filter", k + ".json", json.dumps(v))

# ---- request: byte 0 = session (bit 0 msgpack, bits 1-3 role), messages split by FE FE ----
ROLES = ["unauth", "admin", "sales", "service_agent", "marketing", "dashboard", "analyst", "loyalty_operator"]
def req(name, role, msgs, msgpack=False):
    flag = (ROLES.index(role) << 1) | (1 if msgpack else 0)
    body = b"\xfe\xfe".join(mp(m) if msgpack else json.dumps(m).encode() for m in msgs)
    put("request", name, bytes([flag]) + body)

contact = {"name": "Ada", "email": "ada@example.org", "city": "Berlin", "credit_limit": 500,
           "tags": ["vip"], "customer_type": "b2b", "extra": {"k": 1}}
session = [
    {"ref": 1, "op": "ping"},
    {"ref": 2, "op": "create", "collection": "contacts", "id": "c_1", "record": contact},
    {"ref": 3, "op": "get", "collection": "contacts", "id": "c_1"},
    {"ref": 4, "op": "update", "collection": "contacts", "id": "c_1", "patch": {"city": "Paris", "phone": None}, "if_rev": 1},
    {"ref": 5, "op": "query", "collection": "contacts", "where": {"city": {"in": ["Paris", "Rome"]}}, "order_by": "-credit_limit", "limit": 5},
    {"ref": 6, "op": "aggregate", "collection": "contacts", "group_by": "city", "metrics": ["count", "sum:credit_limit", "avg:credit_limit"]},
    {"ref": 7, "op": "subscribe", "collection": "contacts", "where": {"city": "Paris"}},
    {"ref": 8, "op": "tx", "ops": [{"op": "create", "collection": "companies", "id": "co_1", "record": {"name": "ACME"}},
                                   {"op": "update", "collection": "contacts", "id": "c_1", "patch": {"company": "co_1"}}]},
    {"ref": 9, "op": "delete", "collection": "contacts", "id": "c_1"},
    {"ref": 10, "op": "schema"},
]
req("admin-session.bin", "admin", session)
req("admin-session-mp.bin", "admin", session, msgpack=True)
req("sales-session.bin", "sales", session)
req("marketing-hidden.bin", "marketing", [
    {"ref": 1, "op": "query", "collection": "contacts", "where": {"email": "x"}},
    {"ref": 2, "op": "query", "collection": "contacts", "order_by": "phone"},
    {"ref": 3, "op": "create", "collection": "contacts", "record": {"name": "x", "phone": "1"}},
    {"ref": 4, "op": "subscribe", "collection": "contacts", "aggregate": {"group_by": "city", "metrics": ["count"]}}])
req("analyst-write.bin", "analyst", [{"ref": 1, "op": "create", "collection": "orders", "record": {}}])
req("unauth.bin", "unauth", [
    {"ref": 1, "op": "ping"}, {"ref": 2, "op": "create", "collection": "contacts", "record": {"name": "x"}},
    {"ref": 3, "op": "auth", "token": "not-a-token"}, {"ref": 4, "op": "get", "collection": "contacts", "id": "c_1"}])
req("envelope.bin", "admin", [
    {"op": "ping", "ref": [1]}, {"ref": 1}, {"ref": "s", "op": 5}, {"ref": 2, "op": "bogus"},
    {"ref": 3, "op": "call", "method": "loyalty.balance", "params": {}},
    {"ref": 4, "op": "query", "collection": "contacts", "limit": 100000},
    {"ref": 5, "op": "query", "collection": "contacts", "after": "garbage"},
    {"ref": 6, "op": "get", "collection": "nope", "id": "x"},
    {"ref": 7, "op": "unsubscribe", "sub": 99},
    {"ref": 8, "op": "subscribe", "collection": "contacts", "since": 0, "snapshot": True},
    {"ref": 9, "op": "tx", "ops": []}, {"ref": 10, "op": "tx", "ops": [{"op": "get"}]}])
req("validation.bin", "admin", [
    {"ref": 1, "op": "create", "collection": "contacts", "record": {"name": "", "country": "DEU", "credit_limit": -1, "customer_type": "alien"}},
    {"ref": 2, "op": "create", "collection": "contacts", "record": {"name": "x", "company": "co_missing"}},
    {"ref": 3, "op": "create", "collection": "contacts", "id": "c_1", "record": {"name": "a", "email": "same@x"}},
    {"ref": 4, "op": "create", "collection": "contacts", "id": "c_2", "record": {"name": "b", "email": "same@x"}},
    {"ref": 5, "op": "update", "collection": "contacts", "id": "c_1", "patch": {"name": "z"}, "if_rev": 9}])
put("request", "not-a-map.bin", b"\x02[1, 2, 3]")
put("request", "bad-json.bin", b"\x02{\"ref\": 1, \"op\": ")
put("request", "bad-utf8.bin", b"\x02{\"ref\": 1, \"op\": \"p\xc3\x28\"}")
put("request", "deep.bin", b"\x02" + b'{"ref": 1, "op": "ping", "x": ' + b"[" * 40 + b"]" * 40 + b"}")
put("request", "mp-giant.bin", b"\x03\xdf\x05\xf5\xe1\x00")
put("request", "preauth-big.bin", b"\x00" + json.dumps({"ref": 1, "op": "ping", "pad": "x" * 17000}).encode())

# ---- http: raw requests for http_regress (a real crmd), not a libFuzzer target ----
H = "Host: 127.0.0.1\r\n"
WSKEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
put("http", "upgrade-bad-keepalive.txt",
    "GET /healthz HTTP/1.1\r\n" + H + "Connection: keep-alive\r\n\r\n"
    "GET /ws HTTP/1.1\r\n" + H + "Connection: keep-alive, Upgrade\r\nUpgrade: websocketx\r\n" + WSKEY + "\r\n"
    "GET /healthz HTTP/1.1\r\n" + H + "\r\n")
put("http", "upgrade-empty.txt", "GET /ws HTTP/1.1\r\n" + H + "Connection: Upgrade\r\nUpgrade:\r\n" + WSKEY + "\r\n")
put("http", "upgrade-h2c.txt", "GET / HTTP/1.1\r\n" + H + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
put("http", "upgrade-twice.txt", "GET /ws HTTP/1.1\r\n" + H + "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: websocket, foo\r\n" + WSKEY + "\r\n")
put("http", "upgrade-bad-version.txt", "GET /ws HTTP/1.1\r\n" + H + "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 99\r\n\r\nGET /healthz HTTP/1.1\r\n" + H + "\r\n")
put("http", "content-length-negative.txt", "POST /healthz HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\nabc")
put("http", "content-length-int64-min.txt", "POST / HTTP/1.1\r\n" + H + "Content-Length: -9223372036854775808\r\n\r\n")
put("http", "content-length-huge.txt", "POST / HTTP/1.1\r\n" + H + "Content-Length: 99999999999999999999999\r\n\r\nx")
put("http", "content-length-twice.txt", "POST / HTTP/1.1\r\n" + H + "Content-Length: 3\r\nContent-Length: -5\r\n\r\nabc")
put("http", "chunked-and-length.txt", "POST / HTTP/1.1\r\n" + H + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    "ffffffffffffffff\r\nx\r\n0\r\n\r\n")
put("http", "negative-then-get.txt", "GET /healthz HTTP/1.1\r\n" + H + "Content-Length: -100\r\nConnection: keep-alive\r\n\r\n"
    "GET /healthz HTTP/1.1\r\n" + H + "\r\n")
put("http", "no-colon-header.txt", "GET / HTTP/1.1\r\n" + H + "Garbage\r\n\r\n")
put("http", "long-uri.txt", "GET /" + "a" * 8000 + " HTTP/1.1\r\n" + H + "\r\n")
put("http", "bare-lf.txt", "GET /healthz HTTP/1.1\n" + H.replace("\r\n", "\n") + "\n")
put("http", "http10-upgrade.txt", "GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + WSKEY + "\r\n")
put("http", "binary-junk.txt", bytes(range(256)) * 4)
