#!/bin/sh
# Makes a self-signed certificate for local use of the nginx (and coturn TLS) listeners.
#
#   nginx/gen-self-signed.sh [HOSTNAME] [OUT_DIR]
#
# HOSTNAME defaults to localhost, OUT_DIR to nginx/certs next to this script. Writes
# fullchain.pem and privkey.pem, the names nginx/signalpost.conf and
# turn-server/turnserver.conf expect. Browsers warn about a self-signed certificate: accept
# it once by opening https://HOSTNAME/ before using wss://. Production wants a real one.
set -eu

host="${1:-localhost}"
out="${2:-$(dirname "$0")/certs}"
days=365

command -v openssl >/dev/null 2>&1 || { echo "openssl is required" >&2; exit 1; }
mkdir -p "$out"

# An IP literal goes in an IP SAN, a name in a DNS SAN: browsers only read the SAN.
case "$host" in
    *[!0-9.]*) san="DNS:$host" ;;
    *) san="IP:$host" ;;
esac
[ "$host" = localhost ] && san="DNS:localhost,IP:127.0.0.1,IP:::1"

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=$host" \
    -addext "subjectAltName=$san" \
    -keyout "$out/privkey.pem" -out "$out/fullchain.pem" 2>/dev/null

# The key stays readable by its owner only; the coturn container runs as another user, so
# docker-compose.yml mounts this directory read-only and you may need `chmod 644` on the
# key for coturn's TLS listener on a local machine (never on a shared host).
chmod 600 "$out/privkey.pem"
chmod 644 "$out/fullchain.pem"
echo "wrote $out/fullchain.pem and $out/privkey.pem for $host (valid $days days)"
