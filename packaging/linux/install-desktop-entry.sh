#!/bin/sh
# Adds IOI Desktop to the desktop's application menu for the current user
# (writes ~/.local/share/applications/ioi-desktop.desktop and the icon; no root needed).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
APPS="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
ICONS="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$APPS" "$ICONS"
cp "$HERE/ioi-desktop.png" "$ICONS/ioi-desktop.png"
sed "s|@LAUNCHER@|$HERE/ioi-desktop.sh|" "$HERE/ioi-desktop.desktop" > "$APPS/ioi-desktop.desktop"
chmod +x "$APPS/ioi-desktop.desktop"
echo "IOI Desktop added to the application menu ($APPS/ioi-desktop.desktop)."
