#!/bin/sh
# Entrypoint of Mosquitto (compose.yaml): installs the dynamic security
# plugin's file that mosquitto-dynsec rendered from the device registry
# (drover registry dynsec-config, in the read-only volume at
# /run/drover/dynsec), then runs the image's own entrypoint with the command.
#
# The rendered file replaces the broker's copy only when it is newer: when
# mosquitto-dynsec rendered again before this start (a fresh `up`, or
# `up --force-recreate mosquitto-dynsec mosquitto`), so the broker starts
# with every device the registry holds, even those added while it was down;
# but not when Mosquitto alone restarts, whose copy the plugin rewrote after
# the registry service's last change and is the newer one.
set -eu
rendered=/run/drover/dynsec/dynamic-security.json
live=/mosquitto/data/dynamic-security.json
if [ ! -s "$rendered" ]; then
	echo "entrypoint: $rendered missing or empty: mosquitto-dynsec (drover registry dynsec-config) must run first" >&2
	exit 1
fi
if [ ! -e "$live" ] || [ "$rendered" -nt "$live" ]; then
	cp "$rendered" "$live.new"
	chmod 600 "$live.new"
	mv "$live.new" "$live"
	echo "entrypoint: installed the dynamic security file rendered from the device registry"
fi
# The image's entrypoint gives /mosquitto (the copy included) to the
# mosquitto user, which the broker drops to.
exec /docker-entrypoint.sh "$@"
