#!/bin/sh
# Sign and send one request to Tolom's REST agent API, with curl and openssl only.
#
#   TOLOM_URL=https://pay.example.kg TOLOM_AGENT=optima TOLOM_SIGNING_KEY=<64 hex> \
#     ./tolom_rest.sh POST /api/v1/agent/check '{"service":"sochi","account":"01904202310427"}'
#   ./tolom_rest.sh GET /api/v1/agent/payments/1234567
#
# Prints the HTTP status on the first line, then the JSON body.
set -eu
method=$1
path=$2
body=${3:-}
timestamp=$(date +%s)
# The body is hashed exactly as sent: printf '%s' adds no newline.
body_hash=$(printf '%s' "$body" | openssl dgst -sha256 -r | cut -d' ' -f1)
signature=$(printf '%s\n%s\n%s\n%s' "$method" "$path" "$timestamp" "$body_hash" \
  | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$TOLOM_SIGNING_KEY" -r | cut -d' ' -f1)
authorization="Tolom-HMAC-SHA256 agent=$TOLOM_AGENT,timestamp=$timestamp,signature=$signature"
if [ -n "$body" ]; then
  curl -sS -X "$method" "$TOLOM_URL$path" -w '\n%{http_code}\n' \
    -H "Authorization: $authorization" -H 'Content-Type: application/json' \
    --data-binary "$body" | { read -r reply; read -r code; echo "$code"; echo "$reply"; }
else
  curl -sS -X "$method" "$TOLOM_URL$path" -w '\n%{http_code}\n' \
    -H "Authorization: $authorization" | { read -r reply; read -r code; echo "$code"; echo "$reply"; }
fi
