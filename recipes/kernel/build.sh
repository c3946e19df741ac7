# Build a configured kernel for $KERNEL_ARCH reproducibly and install its boot image
# ($KERNEL_IMAGE: x86's bzImage, arm64's uncompressed Image), vmlinux, System.map, the config,
# the release string and the modules into $OUT. Shared by every kernel recipe.
b="$REPROVM_BUILD"
export KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH")"
export KBUILD_BUILD_USER=reprovm KBUILD_BUILD_HOST=reprovm KBUILD_BUILD_VERSION=1
MAPS="-ffile-prefix-map=$b/src=. -ffile-prefix-map=$b/obj=."
make O="$b"/obj ARCH="$KERNEL_ARCH" -j"$JOBS" KCFLAGS="$MAPS" KAFLAGS="$MAPS" "$KERNEL_IMAGE" modules
make -s O="$b"/obj ARCH="$KERNEL_ARCH" INSTALL_MOD_PATH="$OUT" modules_install
KVER="$(cat "$b"/obj/include/config/kernel.release)"
rm -f "$OUT/lib/modules/$KVER/build" "$OUT/lib/modules/$KVER/source"
cp "$b"/obj/arch/"$KERNEL_ARCH"/boot/"$KERNEL_IMAGE" "$OUT"/"$KERNEL_IMAGE"
cp "$b"/obj/vmlinux "$b"/obj/System.map "$OUT"/
cp "$b"/obj/.config "$OUT"/config
echo "$KVER" > "$OUT"/kernel.release
