#!/bin/sh
# A sample update bundle: what the Node Update service runs on each node, inside the node_update reservation.
# It gets CODENAME, NODE and BUNDLE_DIR in its environment; a non-zero exit puts the node in FAIL.
# A real bundle installs packages or configuration here; this one shows its inputs and takes a moment.
set -eu
: "${CODENAME:?}" "${NODE:?}" "${BUNDLE_DIR:?}"
echo "applying $CODENAME on $NODE from $BUNDLE_DIR"
cat "$BUNDLE_DIR/motd"
sleep "${UPDATE_SECONDS:-2}"
echo "done"
