#!/bin/sh
# Build the macOS disk image from the .app bundle made by build_installer.spec (BUNDLE).
# Run on macOS after `pyinstaller --noconfirm --clean build_installer.spec`:
#   sh packaging/macos/make_dmg.sh
# Output: dist/ioi-desktop-<version>.dmg (drag "IOI Desktop.app" to Applications).
# Unsigned: first launch needs right-click > Open, or sign with `codesign --deep -s "Developer ID ..."`
# and notarize with `xcrun notarytool` before distributing.
set -e
cd "$(dirname "$0")/../.."
VERSION=$(python3 -c "import ioi_desktop; print(ioi_desktop.__version__)")
STAGE=$(mktemp -d)
cp -R "dist/IOI Desktop.app" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "IOI Desktop" -srcfolder "$STAGE" -ov -format UDZO "dist/ioi-desktop-$VERSION.dmg"
rm -rf "$STAGE"
echo "dist/ioi-desktop-$VERSION.dmg"
