#!/usr/bin/env bash
# setup.sh installs the Debian packages Gantry needs at run time and in its
# test suite. It is idempotent: packages already present are left alone, and
# apt-get runs only when something is missing.
set -euo pipefail

# Run time: containerd + runc execute containers, the CNI plugins give each
# instance its network, iptables carries port maps and namespace isolation.
runtime_pkgs=(containerd runc containernetworking-plugins iptables iproute2 ca-certificates)
# Tests, demos and benchmarks: busybox-static is packed into the seed image;
# the rest are the real peers and clients the suite measures against.
test_pkgs=(busybox-static skopeo dnsutils dnsperf nginx-light prometheus docker-registry wrk curl git bzip2 xz-utils zstd)

want=("${runtime_pkgs[@]}")
if [[ "${GANTRY_SETUP_MINIMAL:-}" != "1" ]]; then
	want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
	# containerd and runc from another package (Docker's containerd.io)
	# will do: installing Debian's would make apt remove that one, and
	# Docker with it.
	case "$p" in
	containerd | runc) command -v "$p" >/dev/null && continue ;;
	esac
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} > 0)); then
	echo "setup: installing ${missing[*]}"
	sudo=""
	if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
	# Packages such as nginx, prometheus and docker-registry ship services;
	# Gantry's tests start their own copies, so keep apt from starting them.
	policy=/usr/sbin/policy-rc.d
	created_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
		$sudo chmod 0755 $policy
		created_policy=1
	fi
	trap '[[ $created_policy == 1 ]] && $sudo rm -f '"$policy" EXIT
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian puts the CNI plugins in /usr/lib/cni; Gantry looks there and in
# /opt/cni/bin, so nothing needs linking.
for bin in containerd runc iptables; do
	command -v "$bin" >/dev/null || { echo "setup: $bin still missing after install" >&2; exit 1; }
done
[[ -x /usr/lib/cni/bridge || -x /opt/cni/bin/bridge ]] || { echo "setup: CNI bridge plugin missing" >&2; exit 1; }
echo "setup: ok"
