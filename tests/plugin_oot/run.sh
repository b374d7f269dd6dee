#!/bin/sh
# plugin_oot -- an out-of-tree plugin, built as docs/plugins.md tells a
# company to build one, then loaded into a real, installed crmd and driven
# over WebSocket.
#
#   run.sh BUILD_DIR SOURCE_DIR LIBDIR BINDIR DRIVE
#     BUILD_DIR   the CMake build tree (what `cmake --install` installs)
#     SOURCE_DIR  this folder (hello.c, hello.json), copied out of the repo
#     LIBDIR      CMAKE_INSTALL_LIBDIR, where crmd-plugin.pc really goes
#     BINDIR      CMAKE_INSTALL_BINDIR, where crmd goes
#     DRIVE       the WebSocket driver (drive.c)
#
# Only the installed header and pkg-config file can be seen by the compiler:
# the sources are compiled from a copy outside the repository, and the
# include path comes from pkg-config alone.
set -eu
BUILD=$1 SRC=$2 LIBDIR=$3 BINDIR=$4 DRIVE=$5
TMP=$(mktemp -d "${TMPDIR:-/tmp}/crmd-oot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log" || {
    cat "$TMP/install.log"; exit 1; }
PC=$TMP/prefix/$LIBDIR/pkgconfig
if [ ! -f "$PC/crmd-plugin.pc" ]; then
    echo "plugin_oot: no crmd-plugin.pc in $PC; installed:"; find "$TMP/prefix"; exit 1
fi

mkdir -p "$TMP/src" "$TMP/plugins"
cp "$SRC/hello.c" "$SRC/hello.json" "$TMP/src/"
cd "$TMP/src"

# The tutorial's command, as it is there.
CFLAGS_PC=$(PKG_CONFIG_PATH=$PC pkg-config --cflags crmd-plugin)
case "$CFLAGS_PC" in
*"$TMP/prefix"*) ;;
*)  echo "plugin_oot: pkg-config --cflags crmd-plugin gives '$CFLAGS_PC', which is not in the"
    echo "install prefix $TMP/prefix: crmd-plugin.pc is not relocatable"
    echo "(include/crmd-plugin.pc.in fixes its prefix at configure time; cmake --install --prefix"
    echo " moves the files, not the prefix written inside; prefix=\${pcfiledir}/... would)"
    cat "$PC/crmd-plugin.pc"
    exit 1 ;;
esac
echo "+ cc -shared -fPIC $CFLAGS_PC -o $TMP/plugins/hello.so hello.c"
cc -shared -fPIC $CFLAGS_PC -o "$TMP/plugins/hello.so" hello.c
cp hello.json "$TMP/plugins/"

# The installed crmd, with the plugin folder.
CRMD_BIN=$TMP/prefix/$BINDIR/crmd CRMD_ARGS="--plugins $TMP/plugins" "$DRIVE"
