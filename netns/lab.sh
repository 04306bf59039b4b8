#!/bin/sh
# Build or remove a ustack lab by hand: the same ip commands as `ustack lab up`.
#
#   netns/lab.sh up NAME [PEER_ADDR/PLEN] [STACK_ADDR/PLEN]
#   netns/lab.sh down NAME
#
# NAME-peer  : namespace of the kernel peer; veth NAME-p with PEER_ADDR (10.77.0.1/24)
# NAME-stack : namespace for ustack; veth NAME-s with NO kernel address, IPv6 off
# (ustack uses STACK_ADDR, default 10.77.0.2/24, on NAME-s itself.)
# OFFLOADS=off netns/lab.sh up NAME : exact-wire mode (needs ethtool), like
# `ustack lab up --no-offloads`: the peer kernel checksums and segments itself.
# Interface names must fit 15 characters: keep NAME at 13 characters or less
# here (the Python code shortens longer names with a hash).
set -eu

usage() { echo "usage: $0 up|down NAME [PEER_ADDR/PLEN] [STACK_ADDR/PLEN]" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 name=$2
peer_addr=${3:-10.77.0.1/24}
stack_addr=${4:-10.77.0.2/24}
peer_ns=$name-peer stack_ns=$name-stack peer_if=$name-p stack_if=$name-s

if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); run it with sudo" >&2
    exit 1
fi
if [ ${#peer_if} -gt 15 ]; then
    echo "$0: name too long for interface names (max 13 characters)" >&2
    exit 1
fi

has_ns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

case $action in
up)
    has_ns "$peer_ns" || ip netns add "$peer_ns"
    has_ns "$stack_ns" || ip netns add "$stack_ns"
    for ns in "$peer_ns" "$stack_ns"; do
        # no IPv6 router solicitations / MLD reports (DESIGN.md trap 4)
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
            net.ipv6.conf.default.disable_ipv6=1 || true
    done
    ip -n "$peer_ns" link show dev "$peer_if" >/dev/null 2>&1 ||
        ip link add "$peer_if" netns "$peer_ns" type veth peer name "$stack_if" netns "$stack_ns"
    # the stack side never carries a kernel address (DESIGN.md trap 1)
    ip -n "$stack_ns" addr flush dev "$stack_if"
    ip -n "$peer_ns" addr flush dev "$peer_if"
    ip -n "$peer_ns" addr add "$peer_addr" dev "$peer_if"
    if [ "${OFFLOADS:-on}" = off ]; then
        ip netns exec "$peer_ns" ethtool -K "$peer_if" tx off tso off gso off >/dev/null
    fi
    ip -n "$peer_ns" link set lo up
    ip -n "$stack_ns" link set lo up
    ip -n "$peer_ns" link set "$peer_if" up
    ip -n "$stack_ns" link set "$stack_if" up
    echo "peer:  ip netns exec $peer_ns ...   ($peer_if, $peer_addr)"
    echo "stack: ip netns exec $stack_ns ustack run --iface $stack_if --address $stack_addr"
    ;;
down)
    # deleting the namespaces deletes the veth pair with them
    ! has_ns "$peer_ns" || ip netns del "$peer_ns"
    ! has_ns "$stack_ns" || ip netns del "$stack_ns"
    ;;
*)
    usage
    ;;
esac
