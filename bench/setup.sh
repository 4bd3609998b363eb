#!/bin/sh
# Installs what the benchmarks need on a fresh Debian/Ubuntu machine (run as root, from the
# repository root): Postfix with debconf set to "No configuration" (so no /etc/postfix/main.cf is
# written and no system mail service is set up; the benchmark runs its own throwaway instance),
# and the Python extras (aiosmtpd, uvloop, matplotlib, py-spy) into the project's virtual env.
set -eu

if [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/lib/postfix/sbin/master ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix
fi

VENV="${VENV:-.venv}"
"$VENV/bin/pip" install -q -e ".[test,speed,bench]"
echo "ready: $VENV/bin/python bench/smtp_throughput.py; $VENV/bin/python bench/idle_connections.py"
