#!/bin/sh
# Launcher for the unpacked IOI Desktop bundle: runs the app from wherever it was unpacked.
HERE="$(cd "$(dirname "$0")" && pwd)"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "$HERE/ioi-desktop/ioi-desktop" "$@"
