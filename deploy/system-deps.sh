#!/usr/bin/env bash
# Installs the system packages the local stack needs when a machine lacks them:
# a Java 17+ runtime and Maven (to fetch and run the Kafka broker), PostgreSQL 15, and
# pip where uv is not installed yet.
set -euo pipefail
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
# `make setup` installs uv with pip where uv is missing; Debian's python3 comes without it.
command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
  || python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (install them, or run as root)" >&2
  exit 1
fi
echo "installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
