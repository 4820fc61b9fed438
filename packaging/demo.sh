#!/bin/bash
# SPDX-License-Identifier: MIT
# The baton demo on one machine: a private RabbitMQ on loopback, three
# simulated hosts (each a real systemd user manager in its own cgroup, with
# its own baton-agent), and the controller. `up` leaves it running and
# prints what to try; `down` stops every process it started, by PID.
#
#   packaging/demo.sh [up|down|status]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
action=${1:-up}
export BATON_DEMO_DIR=${BATON_DEMO_DIR:-/var/tmp/baton-demo}

case "$action" in
up)
        packaging/install-deps.sh
        if [ ! -d build-demo ]; then
                meson setup build-demo --buildtype=debugoptimized >/dev/null
        fi
        meson compile -C build-demo >/dev/null
        exec /usr/bin/python3 packaging/demo.py up "$root/build-demo"
        ;;
down | status)
        exec /usr/bin/python3 packaging/demo.py "$action" "$root/build-demo"
        ;;
*)
        echo "usage: $0 [up|down|status]" >&2
        exit 2
        ;;
esac
