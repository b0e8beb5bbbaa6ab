#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the real captured fixtures under crates/core/fixtures/ (plus
# a few hand-written inputs where no capture exists, and fuzz/regressions/<target>/: inputs that
# once crashed the target). Idempotent: files are named by content,
# so running it again adds nothing new. The corpus directories are gitignored.
#   fuzz/seed.sh            seed every target
#   fuzz/seed.sh TARGET     seed one
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../crates/core/fixtures"
corpus="$here/corpus"

# put TARGET FILE...: copies each file under its content hash.
put() {
  local target="$1"; shift
  mkdir -p "$corpus/$target"
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    cp "$f" "$corpus/$target/$(sha1sum <"$f" | cut -c1-40)"
  done
}

# text TARGET STRING: a hand-written seed (printf escapes are interpreted).
text() {
  local tmp
  tmp="$(mktemp)"
  printf "$2" >"$tmp"
  put "$1" "$tmp"
  rm -f "$tmp"
}

# body FILE: the body of a captured HTTP response (everything after the first blank line).
body() {
  sed '1,/^\r\{0,1\}$/d' "$1"
}

seed_resp() {
  put resp "$fixtures"/redis/*.resp
  text resp '*2\r\n$3\r\nfoo\r\n$-1\r\n'
  text resp ':42\r\n'
}

seed_http() {
  put http "$fixtures"/elasticsearch/*.http
  text http 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'
  text http 'HTTP/1.0 200 OK\r\n\r\nuntil close'
}

seed_memcached() {
  put memcached "$fixtures"/memcached/*
  text memcached 'VALUE session:1 0 5\r\nhello\r\nEND\r\n'
  text memcached 'key=session%%3Aab exp=-1 la=1700000000 cas=1 fetch=no cls=1 size=69\n'
}

seed_mongodb() {
  put mongodb_reply "$fixtures"/mongodb/*.bin
  local f op tmp
  tmp="$(mktemp)"
  for f in "$fixtures"/mongodb/*.bin; do
    op="$(od -An -tu4 -j12 -N4 "$f" | tr -d ' ')"
    case "$op" in
      2013) tail -c +22 "$f" >"$tmp" ;;   # OP_MSG: header, flags, section kind 0
      1) tail -c +37 "$f" >"$tmp" ;;      # OP_REPLY: header and 20 bytes of fields
      *) continue ;;
    esac
    put mongodb_document "$tmp"
  done
  rm -f "$tmp"
}

seed_postgresql() {
  put postgresql "$fixtures"/postgresql/*.bin
}

seed_mysql() {
  put mysql "$fixtures"/mysql/*.bin
  # mysql_result_set takes one knobs byte first: 0x7f = row cap 15, byte budget 8 KiB.
  local f tmp
  tmp="$(mktemp)"
  for f in "$fixtures"/mysql/*.bin; do
    { printf '\x7f'; cat "$f"; } >"$tmp"
    put mysql_result_set "$tmp"
  done
  rm -f "$tmp"
}

seed_elasticsearch() {
  put elasticsearch "$fixtures"/elasticsearch/*.http
}

seed_flatten_json() {
  local f tmp
  tmp="$(mktemp)"
  for f in "$fixtures"/elasticsearch/*.http; do
    body "$f" >"$tmp"
    put flatten_json "$tmp"
  done
  rm -f "$tmp"
  text flatten_json '{"session":"{\\"user\\":{\\"email\\":\\"x@y.z\\"}}","devices":[{"mac":"AA"}]}'
}

seed_tls_sniff() {
  text tls_sniff '\x16\x03\x01\x00\xa5\x01'
  text tls_sniff '\x15\x03\x03\x00\x02\x02\x46'
  text tls_sniff 'HTTP/1.1 400'
}

seed_scope() {
  local t
  for t in '127.0.0.1' '127.0.10.0/24:6379' '127.0.10.1-20' '127.0.10.1-127.0.11.9' \
    '[::1]:6379' '[fd00::/120]:6379' 'fd00::1:6379' 'db.example.internal:9200' \
    '6379,9200-9210,27017' ' 1 - 3 , 5 '; do
    text scope "$t"
  done
  text scope 'allow = ["127.0.10.0/24", "localhost:9200"]\ndeny = ["127.0.10.9"]\nports = "6379,9200"\n'
}

# Hand-written values in each serialized format (the lab's fixtures make more at lab/up).
seed_decode() {
  local t
  for t in decode_php_serialize decode_php_session decode_pickle decode_msgpack decode_signed_session \
    decode_encoded_json; do
    text "$t" 'a:2:{s:5:"email";s:11:"a@b.example";s:5:"roles";a:1:{i:0;s:5:"admin";}}'
    text "$t" 'O:4:"User":1:{s:10:"\0User\0name";s:3:"Ada";}'
    text "$t" 'user_id|i:7;email|s:11:"a@b.example";cart|a:0:{}'
    text "$t" '\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05email\x94\x8c\x0ba@b.example\x94\x8c\x03ids\x94]\x94(K\x01K\x02e\x8c\x02ok\x94\x88u.'
    text "$t" '\x82\xa5email\xaba@b.example\xa1n\x93\x01\xff\xcd\x01\x2c'
    text "$t" 'eyJ1c2VyX2lkIjoiNyIsImVtYWlsIjoiYUBiLmV4YW1wbGUifQ.Zy1xAA.c2lnbmF0dXJl'
    text "$t" 'eyJ1c2VyX2lkIjoiNyIsImVtYWlsIjoiYUBiLmV4YW1wbGUifQ:1r2x3y:c2lnbmF0dXJl'
    text "$t" '%%7B%%22email%%22%%3A%%22a%%40b.example%%22%%7D'
    text "$t" '\\x7b2261223a317d'
  done
}

# Inputs that once crashed a target (kept in git, replayed by every run).
seed_regressions() {
  local dir
  for dir in "$here"/regressions/*/; do
    [ -d "$dir" ] || continue
    local t
    t="$(basename "$dir")"
    [ "$want" = all ] || [ "$want" = "$t" ] || continue
    put "$t" "$dir"*
  done
}

targets=(resp http memcached mongodb_reply mongodb_document postgresql mysql mysql_result_set
  elasticsearch flatten_json tls_sniff scope decode_php_serialize decode_php_session decode_pickle
  decode_msgpack decode_signed_session decode_encoded_json)
want="${1:-all}"
for t in "${targets[@]}"; do
  [ "$want" = all ] || [ "$want" = "$t" ] || continue
  case "$t" in
    mongodb_reply | mongodb_document) seed_mongodb ;;
    mysql | mysql_result_set) seed_mysql ;;
    decode_*) seed_decode ;;
    *) "seed_$t" ;;
  esac
done
seed_regressions
