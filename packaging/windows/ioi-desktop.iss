; Inno Setup script: wraps the one-folder PyInstaller build (dist\ioi-desktop) into
; a per-user installer with a Start-menu entry and an uninstaller.
; Build on Windows after `pyinstaller --noconfirm --clean build_installer.spec`:
;   iscc packaging\windows\ioi-desktop.iss
; Output: dist\ioi-desktop-setup-<version>.exe

#define AppName "IOI Desktop"
#define AppVersion "0.1.0"
#define AppExe "ioi-desktop.exe"

[Setup]
AppId={{4E6C2D1A-9B7F-4C55-9E1B-6A0D3F2B8C41}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=IOI Desktop developers
DefaultDirName={localappdata}\Programs\IOI Desktop
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
OutputDir=..\..\dist
OutputBaseFilename=ioi-desktop-setup-{#AppVersion}
SetupIconFile=..\..\resources\icons\ioi-desktop.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
WizardStyle=modern

[Files]
Source: "..\..\dist\ioi-desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{userdesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\{#AppExe}"; Description: "Launch {#AppName}"; Flags: nowait postinstall skipifsilent
