#!/bin/sh
# Launcher for the unpacked IOI Desktop bundle: runs the app from wherever it was unpacked.
# The bundle carries the X11/xcb libraries Qt needs; the app itself checks, before it opens
# its window, that Qt's xcb plugin can load, and otherwise prints the missing libraries and
# the command that installs them (exit status 2).
HERE="$(cd "$(dirname "$0")" && pwd)"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "$HERE/ioi-desktop/ioi-desktop" "$@"
