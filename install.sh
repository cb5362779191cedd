#!/usr/bin/env bash
# Installs what this machine lacks for opsflow: the Debian packages of the local stack, then the project
# (with its dev tools) in ./.venv. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# slurm: controller, node daemon, client tools; munge for its authentication; Prometheus and the process
# exporter; podman (with runc: crun fails on some cgroup layouts) for the Docker-API code paths; busybox-static
# for the registry-free container image; chromium + its driver for the browser test of the approval form; a JDK for Spark (only if no java is on PATH).
packages=(slurmctld slurmd slurm-client munge prometheus prometheus-process-exporter
          podman runc conmon catatonit netavark busybox-static chromium chromium-driver)
command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install.sh: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian packages' own services are not used (the stack runs its own, under OPSFLOW_HOME).
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
# prefect 3.9.x asks for a certifi newer than the package index serves: overrides.txt pins the newest served.
.venv/bin/uv pip install -q --python .venv/bin/python --override constraints/overrides.txt -e '.[dev]'
echo "install.sh: ready (.venv/bin/opsflow)"
